"""Check config files as the workflow reads them: YAML errors and keys given twice
are reported with file and line, schema errors (an unknown key, a wrong type, a value
out of range or not allowed) with file and dotted key, as the workflow says them.

    python tools/check_config.py config/my_study.yaml [more.yaml ...]

Each file is checked as `snakemake --configfile FILE` reads it: over
config/config.yaml.  A file of published references (a top-level `references` key,
as config/references.yaml) is checked against its own schema.  Snakemake reads
`--configfile` files before the Snakefile runs and reports a YAML error there as
"Config file is not valid JSON or YAML", naming no file; this names the file, line
and column.
"""

import copy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from common.config_errors import ConfigSchemaError, validate_config, whole_numbers  # noqa: E402
from common.config_files import ConfigFileError, load_config_file  # noqa: E402
from common.references import ReferenceError, load_references  # noqa: E402

MAIN_CONFIG = REPO / "config/config.yaml"
SCHEMA = REPO / "config/schemas/config.schema.yaml"


def merged(base: dict, layer: dict) -> dict:
    """``layer`` over ``base``, mappings merged key by key (Snakemake's update_config)."""
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def check(path: str) -> None:
    """ConfigFileError, ConfigSchemaError or ReferenceError for config file ``path``."""
    data = load_config_file(path)
    if "references" in data:
        load_references(path)
        return
    main = str(MAIN_CONFIG)
    if Path(path).resolve() == MAIN_CONFIG.resolve():
        files, config = [path], copy.deepcopy(data)
    else:
        files = [main, path]
        config = merged(load_config_file(main), data)
    for key in ("epochs", "iterations", "seeds"):
        whole_numbers(config, key)
    validate_config(config, SCHEMA, files)


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        try:
            check(path)
        except (ConfigFileError, ConfigSchemaError, ReferenceError) as error:
            print(error, file=sys.stderr)
            failed = 1
        else:
            print(f"{path}: ok")
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
