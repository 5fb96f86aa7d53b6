"""Print a table on the terminal and into the log: `snakemake check` (rule recipe_check's table), `snakemake gpu_check` (rule gpu_check_table's)."""

from pathlib import Path


def main(snakemake) -> None:
    text = Path(snakemake.input[0]).read_text()
    print(text, flush=True)
    Path(snakemake.log[0]).write_text(text)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
