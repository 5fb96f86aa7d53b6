"""`snakemake check`: print the recipe check (rule check; the table is rule recipe_check's)."""

from pathlib import Path


def main(snakemake) -> None:
    text = Path(snakemake.input[0]).read_text()
    print(text, flush=True)
    Path(snakemake.log[0]).write_text(text)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
