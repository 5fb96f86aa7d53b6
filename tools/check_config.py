"""Check config files as the workflow reads them: YAML errors and keys given twice
are reported with file and line.

    python tools/check_config.py config/my_study.yaml [more.yaml ...]

Snakemake reads `--configfile` files before the Snakefile runs and reports a
YAML error there as "Config file is not valid JSON or YAML", naming no file;
this names the file, line and column.  Keys given twice are also caught by the
workflow itself when it plans.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from common.config_files import ConfigFileError, load_config_file  # noqa: E402


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        try:
            load_config_file(path)
        except ConfigFileError as error:
            print(error, file=sys.stderr)
            failed = 1
        else:
            print(f"{path}: ok")
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
