"""Config files read strictly: a YAML error or a key given twice names the file and line.

Snakemake itself reads config files leniently (the last of two equal keys wins,
and a syntax error in a ``--configfile`` is reported without file or line).
The Snakefile runs ``check_config_files`` on every config file before it uses
them; ``python tools/check_config.py FILE...`` does the same by hand.
Standard library + PyYAML only: it runs at planning time on a login node.
"""

import os
import re
from pathlib import Path

import yaml


class ConfigFileError(Exception):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: PyYAML's own error follows
            first = None
        if first is not None:
            raise ConfigFileError(
                f"line {key_node.start_mark.line + 1}: key {key!r} is given twice "
                f"(first on line {first}); remove one of them"
            )
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config_file(path) -> dict:
    """The mapping in YAML file ``path``; ConfigFileError naming file and line otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigFileError(f"config file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigFileError(f"config file {path}: not UTF-8 text ({error.reason})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except ConfigFileError as error:
        raise ConfigFileError(f"config file {path}, {error}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(p for p in (error.context, error.problem) if p)
        raise ConfigFileError(f"config file {path}{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigFileError(f"config file {path}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


def check_config_files(paths) -> None:
    for path in paths:
        load_config_file(path)


def expand_path(value: str, key: str) -> str:
    """``~`` and ``$VARS`` of path ``value`` (config key ``key``) expanded; an unset variable is an error."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    if "$" in expanded:
        unset = [a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", value) if (a or b) not in os.environ]
        if unset:
            raise ConfigFileError(
                f"config key {key}: {value!r} uses environment variable(s) {', '.join(unset)}, which are not set"
            )
    return expanded

