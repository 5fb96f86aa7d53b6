"""One list of a variant's subset (rule make_subset): the ids of one of its training
lists that the nested subset of their union keeps (common/subsets.py).

Every list of a subset is written by its own job from the same whole lists, so the
lists of one subset always agree; the log gives the subset's size and the sha256
of each of its lists (the training log repeats them).
"""

import logging
from pathlib import Path

from common.jobs import sha256_text, start_log, write_text
from common.subsets import SubsetError, choose_subset, subset_size
from common.voc import read_id_list

log = logging.getLogger("make_subset")


def list_text(ids: list[str]) -> str:
    return "".join(f"{i}\n" for i in ids)


def subset_lists(lists: list[Path], spec: dict, where: str) -> list[list[str]]:
    """The subset's ids per list, for ``spec`` = {size | fraction, seed}."""
    members = [read_id_list(path) for path in lists]
    total = sum(len(ids) for ids in members)
    amount = {k: v for k, v in spec.items() if k != "seed"}
    try:
        size = subset_size(amount, total, where)
    except SubsetError as error:
        raise SubsetError(f"{error} (lists: {', '.join(map(str, lists))})") from error
    return choose_subset(members, size, spec.get("seed", 0))


def main(snakemake) -> None:
    start_log(snakemake)
    p, w = snakemake.params, snakemake.wildcards
    chosen = subset_lists([Path(path) for path in snakemake.input.lists], dict(p.subset), f"subset {w.subset}")
    mine = chosen[list(p.members).index(w.member)]
    text = list_text(mine)
    write_text(Path(snakemake.output[0]), text)
    log.info(
        "subset %s: %d images in all; list %s: %d ids, sha256 %s",
        w.subset, sum(len(ids) for ids in chosen), w.member, len(mine), sha256_text(text)[:16],
    )  # fmt: skip


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
