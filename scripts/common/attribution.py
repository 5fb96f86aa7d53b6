"""Which runs of a config separate the voc -> vocaug change into its parts
(planning: plain Python, no torch), and the Findings sentence of the table
(scripts/attribution.py computes it).

The study's two variants differ in four things at once.  Each part compares two
runs of the config that differ in that one thing (same model settings):

* annotation source: ``train_sbd`` under SBD's labels vs VOC's (same images: the whole
  list or the same subset of it, same budget);
* quantity: a ``trainaug`` subset of the baseline's size vs all of ``trainaug`` (same budget);
* images: the baseline's VOC ``train`` vs an ``aug`` subset of the same size (same budget);
* compute: the baseline at the compared epoch count vs at an iteration budget.

Variants are recognised by what they train on (common.subsets.pieces), not by name.
"""

import json
import math

from common.stats import decimals_for, interval_text
from common.subsets import budget_key, parse_budget, pieces

TRAINAUG = pieces([{"split": "trainaug", "labels": "SegmentationClassAug"}])
TRAIN_SBD_VOC = pieces([{"split": "train_sbd", "labels": "SegmentationClass"}])
TRAIN_SBD_SBD = pieces([{"split": "train_sbd", "labels": "SegmentationClassSBD"}])
AUG = pieces([{"split": "aug", "labels": "SegmentationClassAug"}])

PARTS = ("annotation source", "quantity", "images", "compute")
QUESTIONS = {
    "total": "all four at once (the study's comparison)",
    "annotation source": "same images (VOC train ids SBD also annotates), SBD's labels instead of VOC's",
    "quantity": "nested trainaug subsets: all images instead of the baseline's number",
    "images": "SBD-only aug images (SBD's labels) instead of VOC train, same number",
    "compute": "the baseline trained for the iteration budget instead of the epoch count",
}


def model_key(settings: dict) -> str:
    """The settings of a variant apart from its data: parts compare variants that share them."""
    return json.dumps({k: v for k, v in settings.items() if k not in ("train_sets", "subset")}, sort_keys=True)


def _subset_of(settings: dict):
    return settings.get("subset")


def plan_attribution(settings: dict, budgets: dict, compare, images: dict, steps: dict) -> list[dict]:
    """The parts of the table, each with the two runs (variant, budget) it compares or
    why it is not measured.

    ``settings``: {variant: result-changing settings}; ``budgets``: {variant: [budget]};
    ``images``: {variant: planned training images}; ``steps``: {(variant, budget):
    planned optimizer steps}.
    """
    baseline, other = compare
    key = model_key(settings[baseline])
    same_model = {v for v in settings if model_key(settings[v]) == key}

    def trains_on(v, wanted):
        return v in same_model and pieces(settings[v]["train_sets"]) == wanted

    def whole(v, wanted):
        return trains_on(v, wanted) and not _subset_of(settings[v])

    def subset(v, wanted, size=None):
        return trains_on(v, wanted) and bool(_subset_of(settings[v])) and (size is None or images[v] == size)

    epoch_budgets = lambda v: [b for b in budgets[v] if parse_budget(b)[0] == "epochs"]  # noqa: E731
    common_epochs = sorted(set(epoch_budgets(baseline)) & set(epoch_budgets(other)), key=budget_key)
    common = sorted(set(budgets[baseline]) & set(budgets[other]), key=budget_key)
    total_budget = (common_epochs or common or [None])[-1]
    iteration_budgets = sorted(
        {b for v in same_model for b in budgets[v] if parse_budget(b)[0] == "iterations"}, key=budget_key
    )
    # the iteration budget nearest to the other variant's steps at the compared epoch count
    target = steps.get((other, total_budget))
    matched = None
    if iteration_budgets:
        matched = min(
            iteration_budgets,
            key=lambda b: abs(math.log(parse_budget(b)[1] / target)) if target else -parse_budget(b)[1],
        )
    base_images = images[baseline]
    example = f"iterations: [{parse_budget(matched)[1] if matched else 20000}]"

    def pair(a_variants, b_variants, same_subset=False):
        """Runs (a, b) of a common budget: the matched iteration budget first. With
        ``same_subset``, a and b take the same subset (or none): subsets rank ids alone,
        so the same spec keeps the same images whatever the labels."""
        options = []
        for a in a_variants:
            for b in b_variants:
                if same_subset and _subset_of(settings[a]) != _subset_of(settings[b]):
                    continue
                for budget in set(budgets[a]) & set(budgets[b]):
                    options.append((budget != matched, parse_budget(budget)[0] != "iterations", budget, a, b))
        if not options:
            return None
        _, _, budget, a, b = min(options, key=lambda o: (o[0], o[1], budget_key(o[2])))
        return {"variant": a, "budget": budget}, {"variant": b, "budget": budget}

    parts = []
    total = None
    if total_budget:
        total = ({"variant": baseline, "budget": total_budget}, {"variant": other, "budget": total_budget})
    parts.append(_part("total", total, f"variants {baseline} and {other} with a common budget"))

    parts.append(
        _part(
            "annotation source",
            pair([v for v in settings if trains_on(v, TRAIN_SBD_VOC)],
                 [v for v in settings if trains_on(v, TRAIN_SBD_SBD)], same_subset=True),  # fmt: skip
            "two variants with train_sets [{split: train_sbd, labels: SegmentationClass}] and "
            f"[{{split: train_sbd, labels: SegmentationClassSBD}}], both with {example}",
        )
    )
    small = [v for v in settings if subset(v, TRAINAUG, base_images)]
    if not small:  # no subset of exactly the baseline's size: the smallest there is
        sizes = sorted(images[v] for v in settings if subset(v, TRAINAUG))
        small = [v for v in settings if sizes and subset(v, TRAINAUG, sizes[0])]
    parts.append(
        _part(
            "quantity",
            pair(small, [v for v in settings if whole(v, TRAINAUG)]),
            f"a trainaug variant with subset: {{size: {base_images}}} and one with all of trainaug, "
            f"both with {example}",
        )
    )
    parts.append(
        _part(
            "images",
            pair([v for v in settings if whole(v, pieces(settings[baseline]["train_sets"]))],
                 [v for v in settings if subset(v, AUG, base_images)]),
            f"a variant with train_sets [{{split: aug, labels: SegmentationClassAug}}] and subset: "
            f"{{size: {base_images}}}, and {baseline}, both with {example}",
        )  # fmt: skip
    )
    compute = None
    if total_budget and matched:
        at_iterations = [v for v in settings if whole(v, pieces(settings[baseline]["train_sets"])) and matched in budgets[v]]
        if at_iterations and total_budget in budgets[baseline]:
            at = baseline if baseline in at_iterations else at_iterations[0]
            compute = ({"variant": baseline, "budget": total_budget}, {"variant": at, "budget": matched})
    parts.append(_part("compute", compute, f"{baseline} with {example} beside its epoch count"))
    return parts


def _part(name: str, runs, missing: str) -> dict:
    if runs is None:
        return {"part": name, "question": QUESTIONS[name], "from": None, "to": None, "missing": missing}
    return {"part": name, "question": QUESTIONS[name], "from": runs[0], "to": runs[1], "missing": None}


def run_name(run: dict | None) -> str:
    return f"{run['variant']} {run['budget']}" if run else ""


def part_text(row: dict, decimals: int) -> str:
    """``+3.2 [+1.0, +5.4]`` for a measured part (``†`` when the interval includes 0; a
    bound whose Monte Carlo error does not settle its last digit carries MARK)."""
    errors = (row.get("low_mc_error"), row.get("high_mc_error"))
    text = interval_text(row["change"], row["low"], row["high"], decimals, errors)
    return text + (" †" if row["low"] <= 0 <= row["high"] else "")


def sentence(rows: list[dict]) -> str:
    """The Findings sentence: each measured part beside the total, the rest named."""
    measured = [r for r in rows if r["measured"]]
    if not measured:
        return "No part of the change is measured yet (attribution.md lists the runs that would measure each)."
    decimals = decimals_for(max(r["mc_error"] for r in measured))
    total = next((r for r in measured if r["part"] == "total"), None)
    parts = [f"{r['part']} {part_text(r, decimals)} ({r['from']} → {r['to']})" for r in measured if r["part"] != "total"]
    missing = [r["part"] for r in rows if not r["measured"] and r["part"] != "total"]
    text = f"Of the {total['from']} → {total['to']} change of {part_text(total, decimals)} mIoU points, " if total else ""
    text += ("measured parts: " + "; ".join(parts)) if parts else "no single part is measured"
    if missing:
        text += f"; not measured: {', '.join(missing)}"
    return text + " (attribution.md)."
