"""The config checked against its JSON schema, each error one short line naming the
file that holds the key, the dotted key, the bad value and what is allowed:

    config/my.yaml: unknown key 'trainig' (did you mean 'training'?)
    config/my.yaml: training.gpus is 0; it must be at least 1

Snakemake's own ``validate`` raises the whole jsonschema error, which prints the
schema and the config (over a thousand lines) around the one wrong key.  The
workflow (rules/common.smk) and ``tools/check_config.py`` both call
``validate_config``, so they say the same thing.  jsonschema + PyYAML only: it runs
at planning time on a login node.
"""

import copy
import difflib
import re
from collections.abc import Mapping
from pathlib import Path

import jsonschema
import yaml

from common.config_files import ConfigFileError, load_config_file

COMMAND_LINE = "--config"
_SHOWN_LENGTH = 60  # a longer bad value is cut: the line stays short
_KINDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping of keys",
    "array": "a list",
    "null": "null",
}


_LIMITS = {  # keyword: (bound, what is counted; None: the value itself)
    "minimum": ("at least", None),
    "maximum": ("at most", None),
    "exclusiveMinimum": ("more than", None),
    "exclusiveMaximum": ("less than", None),
    "minItems": ("at least", ("item", "items")),
    "maxItems": ("at most", ("item", "items")),
    "minProperties": ("at least", ("entry", "entries")),
    "maxProperties": ("at most", ("entry", "entries")),
    "minLength": ("at least", ("character", "characters")),
    "maxLength": ("at most", ("character", "characters")),
}


class ConfigSchemaError(Exception):
    pass


def _with_defaults(validator_class):
    """Fill in each property's schema default before validating it, as Snakemake's
    ``validate(set_default=True)`` does (a copy: the config is changed later)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def whole_numbers(config: dict, key: str) -> None:
    """config[key] as a list of ints: `--config epochs=[1,2]` hands list items over as
    strings, and `--config epochs=3` (or `epochs: 3`) a single value."""
    values = config.get(key)
    if values is None:
        return
    if not isinstance(values, list):
        values = [values]
    numbers = []
    for value in values:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigSchemaError(
                f"config key {key}: {value!r} is not a non-negative whole number (e.g. {key}=[1,2])"
            )
        numbers.append(value)
    config[key] = numbers


def validate_config(config: dict, schema_path, files, command_line: Mapping | None = None) -> None:
    """Fill in the schema's defaults and validate ``config``, the merge of ``files`` (in
    order) and the ``--config`` values ``command_line``; ConfigSchemaError otherwise."""
    with open(schema_path, encoding="utf-8") as handle:
        schema = yaml.safe_load(handle)
    errors = list(_Validator(schema).iter_errors(config))
    if not errors:
        return
    sources = _Sources(files, command_line)
    lines = {}
    for error in errors:
        for key, line in _describe(error):
            lines[(key, line)] = f"{sources.holding(*key)}: {line}"
    raise ConfigSchemaError(
        "\n".join(lines[k] for k in sorted(lines, key=lambda k: (dotted(k[0][0]), k[1])))
    )


def dotted(path) -> str:
    """``training.crop_size[0]`` for the path ('training', 'crop_size', 0)."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "the config"


def _shown(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= _SHOWN_LENGTH else text[: _SHOWN_LENGTH - 4] + " ..."


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return {str: "a string", list: "a list", dict: "a mapping of keys"}.get(
        type(value), type(value).__name__
    )


def _one_of(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _describe(error):
    """((path, whether it is an unknown key), line) for each problem of one jsonschema error."""
    path, value = tuple(error.absolute_path), error.instance
    kind, allowed = error.validator, error.validator_value
    key = dotted(path)
    if kind == "additionalProperties" and allowed is False:
        known = list(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        for name in value:
            if name in known or any(re.search(p, str(name)) for p in patterns):
                continue
            near = difflib.get_close_matches(str(name), known, n=1)
            where = dotted(path + (name,))
            hint = (
                f"did you mean '{dotted(path + (near[0],))}'?"
                if near
                else f"known keys: {', '.join(known)}"
            )
            yield ((path + (name,), True), f"unknown key '{where}' ({hint})")
        return
    if "propertyNames" in error.relative_schema_path:
        rule = f"must match {allowed}" if kind == "pattern" else f"is not allowed ({error.message})"
        yield ((path, False), f"{key}: the name {value!r} {rule}")
        return
    if kind == "required":
        for name in allowed:
            if name not in value:
                yield ((path, False), f"missing key '{dotted(path + (name,))}'")
        return
    what = ""  # the kind of a value of the wrong type
    if kind == "type":
        types = [allowed] if isinstance(allowed, str) else allowed
        what = "" if value is None else f", {_kind(value)}"
        rule = f"it must be {_one_of(_KINDS.get(t, t) for t in types)}"
    elif kind == "enum":
        rule = f"it must be one of {', '.join(str(v).lower() if isinstance(v, bool) else str(v) for v in allowed)}"
        near = (
            difflib.get_close_matches(value, [v for v in allowed if isinstance(v, str)], n=1)
            if isinstance(value, str)
            else []
        )
        rule += f" (did you mean '{near[0]}'?)" if near else ""
    elif kind == "minLength" and allowed == 1:
        rule = "it must not be empty"
    elif kind in _LIMITS:
        bound, unit = _LIMITS[kind]
        amount = allowed if unit is None else _count(allowed, *unit)
        rule = f"it must {'be' if unit is None else 'have'} {bound} {amount}"
    elif kind == "uniqueItems":
        rule = "its items must all differ"
    elif kind == "pattern":
        rule = f"it must match {allowed}"
    else:
        rule = f"{kind} {_shown(allowed)} is not met"
    yield ((path, False), f"{key} is {_shown(value)}{what}; {rule}")


class _Sources:
    """Which of the merged config files (or ``--config``) holds a key: read only when
    there is an error to report."""

    def __init__(self, files, command_line):
        self.layers = []
        for path in dict.fromkeys(str(p) for p in files):
            try:
                data = load_config_file(path)
            except ConfigFileError:  # reported before validation; here it holds nothing
                data = {}
            self.layers.append((_label(path), data))
        if command_line:
            self.layers.append((COMMAND_LINE, command_line))

    def holding(self, path, unknown_key: bool) -> str:
        """Every layer that holds an unknown key or a mapping (they merge), else the last
        that sets the value (it wins); every file when none does."""
        holders = [
            (label, node)
            for label, data in self.layers
            for node in [_at(data, path)]
            if node is not _MISSING
        ]
        if not holders:
            return ", ".join(label for label, _ in self.layers if label != COMMAND_LINE) or "config"
        if unknown_key or isinstance(holders[-1][1], Mapping):
            return ", ".join(label for label, _ in holders)
        return holders[-1][0]


_MISSING = object()


def _at(data, path):
    node = data
    for part in path:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return _MISSING
    return node


def _label(path: str) -> str:
    """``path`` relative to the working directory when it is inside it (as typed)."""
    try:
        return (
            str(Path(path).resolve().relative_to(Path.cwd().resolve()))
            if Path(path).is_absolute()
            else path
        )
    except ValueError:
        return path
