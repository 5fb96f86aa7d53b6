"""Fine-tuning against training from zero on your own datasets (rule compare_finetuning):
``tables/finetune.{csv,md}`` and ``figures/finetune.{png,pdf}``.

Per dataset of the config's ``datasets``, every variant that starts from another
run (``init_from``) is compared with every variant that does not, at each budget
both have: the mIoU on the dataset's val list (mean over seeds) with the paired
bootstrap interval of the change over val images and seeds ("better"), and the
val mIoU after the first epoch plus the epoch at which the fine-tuned run first
reaches the scratch run's final mIoU ("faster").  The figure draws each
variant's val mIoU per epoch.
"""

import logging
from pathlib import Path

import numpy as np

from common.jobs import markdown_table, start_log, write_csv, write_text
from common.run_files import read_history
from common.stats import change_columns, decimals_for, group_per_image, interval_text, paired_bootstrap, precision_note, unsettled

log = logging.getLogger("compare_finetuning")

COLUMNS = ["dataset", "budget", "scratch", "finetuned", "init_from", "seeds", "scratch_mIoU", "finetuned_mIoU",
           "change", "low", "high", "mc_error", "low_mc_error", "high_mc_error", "scratch_epoch1", "finetuned_epoch1",
           "epochs", "reaches_scratch_at"]  # fmt: skip


def mean_curves(runs: list[dict], paths: list) -> dict[tuple[str, str], tuple[list[int], list[float]]]:
    """{(variant, budget): (epochs, val mIoU per epoch, mean over seeds)}."""
    curves = {}
    for run, path in zip(runs, paths, strict=True):
        curves.setdefault((run["variant"], run["budget"]), []).append(
            {row["epoch"]: row["mIoU"] for row in read_history(Path(path)) if row["mIoU"] is not None}
        )
    means = {}
    for key, per_seed in curves.items():
        epochs = sorted(set.intersection(*(set(c) for c in per_seed)))
        means[key] = (epochs, [float(np.mean([c[e] for c in per_seed])) for e in epochs])
    return means


def first_epoch_reaching(curve: tuple[list[int], list[float]], value: float) -> int | None:
    return next((e for e, m in zip(*curve) if m >= value), None)


def compare(pairs: list[dict], groups: dict, curves: dict, bootstrap: dict) -> list[dict]:
    rows = []
    for pair in pairs:
        scratch, tuned = (pair["scratch"], pair["budget"]), (pair["finetuned"], pair["budget"])
        if scratch not in groups or tuned not in groups:
            continue
        result = paired_bootstrap(
            groups[scratch], groups[tuned], resamples=bootstrap["resamples"], seed=bootstrap["seed"],
            confidence=bootstrap["confidence"], max_resamples=bootstrap["max_resamples"],
            mc_error=bootstrap["mc_error"] / 100,
        )  # fmt: skip
        scratch_final = 100 * float(result["miou_baseline"])
        rows.append(
            {
                **{k: pair[k] for k in ("dataset", "budget", "scratch", "finetuned", "init_from")},
                "seeds": f"{len(groups[scratch])}, {len(groups[tuned])}",
                "scratch_mIoU": scratch_final,
                "finetuned_mIoU": 100 * float(result["miou_other"]),
                **change_columns(result),
                "scratch_epoch1": curves[scratch][1][0],
                "finetuned_epoch1": curves[tuned][1][0],
                "epochs": curves[tuned][0][-1],
                # history.csv holds MMSeg's val mIoU of each epoch, in points
                "reaches_scratch_at": first_epoch_reaching(curves[tuned], curves[scratch][1][-1]),
            }
        )
    return rows


def markdown(rows: list[dict], confidence: float, missing: list[str]) -> str:
    error = max((r["mc_error"] for r in rows), default=0.0)
    decimals = decimals_for(error)
    f = f".{decimals}f"
    errors = [(r.get("low_mc_error"), r.get("high_mc_error")) for r in rows]
    marked = sum(unsettled(e, decimals) for pair in errors for e in pair)
    table = [
        {
            "dataset": r["dataset"], "budget": r["budget"], "from zero": r["scratch"],
            "fine-tuned": f"{r['finetuned']} (from {r['init_from']})", "seeds": r["seeds"],
            "mIoU from zero": format(r["scratch_mIoU"], f), "mIoU fine-tuned": format(r["finetuned_mIoU"], f),
            "change": interval_text(r["change"], r["low"], r["high"], decimals, pair)
            + (" †" if r["low"] <= 0 <= r["high"] else ""),
            "after epoch 1": f"{r['scratch_epoch1']:.1f} → {r['finetuned_epoch1']:.1f}",
            "reaches from-zero's final": "never" if r["reaches_scratch_at"] is None
            else f"epoch {r['reaches_scratch_at']} of {r['epochs']}",
        }
        for r, pair in zip(rows, errors)
    ]  # fmt: skip
    text = markdown_table(list(table[0]) if table else ["dataset"], table)
    text += (
        f"\nmIoU on each dataset's val list in points, mean over seeds; change = fine-tuned − from zero "
        f"with its {confidence:.0%} paired bootstrap interval over val images and seeds († includes 0). "
        "After epoch 1 and reaches: val mIoU of the training log (mean over seeds), how much sooner "
        "fine-tuning gets there."
    )
    text += f" {precision_note(error, decimals, marked)}\n" if rows else "\n"
    return text + "".join(f"\n{line}\n" for line in missing)


def plot(curves: dict, variants: dict, png: Path, pdf: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common.plots import save, variant_colours

    datasets = sorted({v["dataset"] for v in variants.values()})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    colours = variant_colours(sorted(variants))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for (variant, budget), (epochs, miou) in sorted(curves.items()):
            if variants[variant]["dataset"] != dataset:
                continue
            source = variants[variant]["init_from"]
            label = f"{variant} {budget}: " + (f"fine-tuned from {source}" if source else "from zero")
            ax.plot(epochs, miou, marker="o", ms=3, color=colours[variant], label=label,
                    linestyle="-" if source else "--")  # fmt: skip
        ax.set(title=f"{dataset}: val mIoU per epoch", xlabel="epoch", ylabel="val mIoU (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save(fig, png, pdf)


def main(snakemake) -> None:
    start_log(snakemake)
    p = snakemake.params
    groups = {}
    for dataset, classes in p.classes.items():
        mine = [(r, path) for r, path in zip(p.runs, snakemake.input.per_image) if p.variants[r["variant"]]["dataset"] == dataset]
        if mine:
            groups.update(group_per_image([r for r, _ in mine], [path for _, path in mine], classes))
    curves = mean_curves(p.runs, list(snakemake.input.history))
    rows = compare(p.pairs, groups, curves, p.bootstrap)
    write_csv(Path(snakemake.output.csv), COLUMNS, rows)
    text = markdown(rows, p.bootstrap["confidence"], p.missing)
    write_text(Path(snakemake.output.md), text)
    plot(curves, p.variants, Path(snakemake.output.png), Path(snakemake.output.pdf))
    log.info("\n%s", text)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
