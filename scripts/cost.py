"""Print the sweep's cost summary, worked out by the workflow from the config (rule cost)."""

from pathlib import Path


def main(snakemake) -> None:
    print(snakemake.params.summary, flush=True)
    Path(snakemake.log[0]).write_text(f"{snakemake.params.summary}\n")


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
