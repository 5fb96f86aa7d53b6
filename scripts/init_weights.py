"""The weights a fine-tuned variant starts from (rule init_weights; config ``init_from``).

Reads the source run's ``final.pth`` and keeps the backbone's tensors, and the
decode and auxiliary heads' only when both models predict the same classes
(``heads``); with another class count the heads start from MMSeg's own init.
The output is a checkpoint the run's config loads through the segmentor's
``init_cfg`` (MMEngine's ``Pretrained``, applied after every module's own init).
"""

import logging
from collections import Counter
from pathlib import Path

log = logging.getLogger("init_weights")
HEADS = ("decode_head.", "auxiliary_head.")


def select(state_dict: dict, heads: bool) -> tuple[dict, dict[str, int]]:
    """(the tensors to load, {module: tensors left out}) of a segmentor's state dict."""
    kept = {key: value for key, value in state_dict.items() if heads or not key.startswith(HEADS)}
    return kept, dict(_modules(key for key in state_dict if key not in kept))


def _modules(keys) -> Counter:
    """{top-level module: tensors} of state-dict keys."""
    return Counter(key.split(".", 1)[0] for key in keys)


def main(snakemake) -> None:
    import torch

    from common.jobs import atomic_path, start_log
    from common.run_files import check_checkpoint

    start_log(snakemake)
    source = Path(snakemake.input.checkpoint)
    init = snakemake.params.init_from
    check_checkpoint(source)
    checkpoint = torch.load(source, map_location="cpu")
    state_dict = checkpoint.get("state_dict", checkpoint)
    kept, skipped = select(state_dict, init["heads"])
    modules = dict(_modules(kept))
    log.info("from run %s (%s):", init["run"], source)
    for module, count in sorted(modules.items()):
        log.info("  loaded  %-16s %4d tensors", module, count)
    for module, count in sorted(skipped.items()):
        log.info("  skipped %-16s %4d tensors (another class count: re-initialised)", module, count)
    with atomic_path(Path(snakemake.output[0])) as tmp:
        torch.save({"state_dict": kept, "meta": {"source": str(source), "run": init["run"],
                                                 "loaded": modules, "skipped": skipped}}, tmp)  # fmt: skip


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
