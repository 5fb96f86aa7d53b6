"""What the tables print: signs, each row's own sample size, and bounds no finer than
their Monte Carlo error (marked where even whole points are not settled)."""

import re

import numpy as np
import pytest

import compare_per_class
import compare_finetuning
import findings
import generalization
from common.attribution import part_text, sentence
from common.stats import MARK, at_most, paired_bootstrap, signed


def generalization_row(variant, train_images, gap=(2.0, -0.46, 4.2), errors=None, bound_error=0.3):
    """A row as generalization.measure writes it: train and val sets, the train − val gap;
    each bound's Monte Carlo error ``bound_error`` unless ``errors`` names it."""
    row = {"variant": variant, "budget": "e6", "seeds": 1, "train images": train_images, "val images": 30}
    row.update({"train mIoU": 40.0, "train low": 35.0, "train high": 45.0})
    row.update({"val mIoU": 38.0, "val low": 33.0, "val high": 43.0})
    row.update({"gap train-val": gap[0], "gap train-val low": gap[1], "gap train-val high": gap[2]})
    bounds = {
        f"mc error {column} {side}": (errors or {}).get(f"{column} {side}", bound_error)
        for column in ("train", "val", "gap train-val")
        for side in ("low", "high")
    }
    row["mc error"] = max(bounds.values())
    return {**row, **bounds, "resamples": 64000}


def cells(text: str, first: str) -> list[str]:
    """The cells of the Markdown table row whose first cell is ``first``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {first} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


# ---- signs ----------------------------------------------------------------------------
def test_a_signed_number_carries_its_own_sign_even_when_it_rounds_to_zero():
    assert signed(-0.46, 0) == "-0" and signed(0.46, 0) == "+0"
    assert signed(-1.26, 1) == "-1.3" and signed(2.0, 1) == "+2.0"
    assert signed(0.0, 1) == "0.0"  # no change at all: no sign


def test_no_table_prints_a_plus_sign_on_a_negative_bound():
    """A bound of -0.46 printed at whole points, in every writer of signed numbers."""
    text = generalization.markdown([generalization_row("voc", 40)], 0.95)
    assert cells(text, "voc")[-1].startswith("+2 [-0, +4]")

    assert findings.interval(2.0, -0.46, 4.2, 0).startswith("+2 [-0, +4]")
    row = {"change": 2.0, "low": -0.46, "high": 4.2, "mc_error": 0.3}
    assert part_text(row, 0).startswith("+2 [-0, +4]")

    tuned = {"dataset": "shapes", "budget": "e6", "scratch": "a", "finetuned": "b", "init_from": "x/e6-s0",
             "seeds": "1, 1", "scratch_mIoU": 50.0, "finetuned_mIoU": 52.0, "change": 2.0, "low": -0.46,
             "high": 4.2, "mc_error": 0.3, "scratch_epoch1": 10.0, "finetuned_epoch1": 20.0, "epochs": 6,
             "reaches_scratch_at": 3}  # fmt: skip
    assert "+2 [-0, +4]" in compare_finetuning.markdown([tuned], 0.95, [])

    per_class = per_class_table(change=(-0.2, -0.46, 0.3), error=0.3)
    assert cells(per_class, "aeroplane")[-1].startswith("-0 [-0, +0]")


def per_class_table(change, error, error_high=None):
    """compare_per_class.markdown of one budget where every class changes by ``change``
    (value, low, high) and each bound has Monte Carlo error ``error`` (``error_high`` for
    the upper bounds)."""
    classes = len(compare_per_class.CLASSES)
    value, low, high = change
    error_high = error if error_high is None else error_high
    full = lambda x: np.full(classes, x, dtype=float)  # noqa: E731
    result = {
        "baseline": full(50.0), "other": full(50.0 + value), "change": full(value), "change_low": full(low),
        "change_high": full(high), "change_low_error": full(error), "change_high_error": full(error_high),
        "miou_baseline": np.float64(50.0), "miou_other": np.float64(50.0 + value), "miou_change": np.float64(value),
        "miou_change_low": np.float64(low), "miou_change_high": np.float64(high),
        "miou_change_low_error": np.float64(error), "miou_change_high_error": np.float64(error_high),
        "resamples": 64000, "left_out": np.zeros(classes), "seeds": (1, 1), "images": 30,
    }  # fmt: skip
    results = {"e6": result}
    rows = compare_per_class.table_rows(results, ["voc", "vocaug"])
    return compare_per_class.markdown(results, rows, ["voc", "vocaug"], 8.0, 0.95)


# ---- each row's own sample size -------------------------------------------------------
def test_generalization_table_gives_each_rows_own_training_sample_size():
    rows = [generalization_row("train_sbd_voc_i", 10), generalization_row("voc", 40)]
    text = generalization.markdown(rows, 0.95)
    table, footnote = text.split("\n\n", 1)
    header = cells(table, "variant")
    assert cells(table, "voc")[header.index("train images")] == "40"
    assert cells(table, "train_sbd_voc_i")[header.index("train images")] == "10"
    assert "10 images" not in footnote  # the first row's size is no one else's
    assert "VOC 2012 val: 30 images" in footnote  # the same for every row: said once


# ---- bounds to the printed digit ------------------------------------------------------
def test_the_footnotes_largest_error_is_rounded_up_not_down():
    assert at_most(0.0664) == "0.067" and at_most(0.067) == "0.067" and at_most(1.0) == "1.0"
    assert at_most(0.39) == "0.39" and at_most(12.31) == "13"
    text = generalization.markdown([generalization_row("voc", 40, bound_error=0.0664)], 0.95)
    assert "at most 0.067 points" in text and "0.066" not in text


def test_a_bound_whose_error_exceeds_half_a_printed_unit_is_marked_and_explained():
    """The demo's case: whole points printed, one bound's Monte Carlo error 1.0 point."""
    row = generalization_row("voc", 40, errors={"gap train-val high": 1.0})
    text = generalization.markdown([row], 0.95)
    assert cells(text, "voc")[-1] == f"+2 [-0, +4{MARK}]"  # only that bound
    assert cells(text, "voc")[header_index(text, "mIoU train")] == "40 [35, 45]"
    footnote = text.split("\n\n", 1)[1]
    assert f"marked {MARK}" in footnote and "at most 1.0 points" in footnote and "half a unit" in footnote
    # every bound settled: no mark, and the footnote does not mention one
    settled = generalization.markdown([generalization_row("voc", 40)], 0.95)
    assert MARK not in settled and "half a unit of its last printed digit" in settled


def header_index(text: str, name: str) -> int:
    return cells(text, "variant").index(name)


def test_per_class_table_marks_the_bounds_the_resamples_could_not_settle():
    """A real bootstrap with too few resamples for whole points on 12 images: exactly
    the bounds whose own error is above 0.5 points carry the mark."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 21, (12, 40))
    per_image = np.zeros((12, 21, 21))
    for i in range(12):
        np.add.at(per_image[i], (labels[i], np.where(rng.random(40) < 0.6, labels[i], 0)), 1)
    better = per_image.copy()
    better[:, np.arange(1, 21), np.arange(1, 21)] += 2
    result = paired_bootstrap([per_image], [better], resamples=100, max_resamples=100, seed=0)
    results = {"e6": {k: (v if k in ("resamples", "left_out") else v * 100) for k, v in result.items()}}
    results["e6"]["seeds"], results["e6"]["images"] = (1, 1), 12
    rows = compare_per_class.table_rows(results, ["voc", "vocaug"])
    text = compare_per_class.markdown(results, rows, ["voc", "vocaug"], 8.0, 0.95)
    marked = 0
    for index, name in enumerate(compare_per_class.CLASSES):
        low, high = results["e6"]["change_low_error"][index], results["e6"]["change_high_error"][index]
        if np.isnan(low):
            continue
        bounds = re.search(r"\[(.*), (.*)\]", cells(text, name)[-1]).groups()
        assert [b.endswith(MARK) for b in bounds] == [low > 0.5, high > 0.5], (name, bounds, low, high)
        marked += (low > 0.5) + (high > 0.5)
    assert marked > 0  # the case is one where whole points are not settled
    largest = np.nanmax([results["e6"][k] for k in ("change_low_error", "change_high_error")])
    assert f"at most {at_most(largest)} points" in text and f"marked {MARK}" in text.split("\n\n")[-1]


def test_finetune_attribution_and_findings_mark_an_unsettled_bound():
    tuned = {"dataset": "shapes", "budget": "e6", "scratch": "a", "finetuned": "b", "init_from": "x/e6-s0",
             "seeds": "1, 1", "scratch_mIoU": 50.0, "finetuned_mIoU": 52.0, "change": 2.0, "low": 0.7,
             "high": 4.2, "mc_error": 1.2, "low_mc_error": 0.2, "high_mc_error": 1.2, "scratch_epoch1": 10.0,
             "finetuned_epoch1": 20.0, "epochs": 6, "reaches_scratch_at": 3}  # fmt: skip
    text = compare_finetuning.markdown([tuned], 0.95, [])
    assert f"+2 [+1, +4{MARK}]" in text and "at most 1.2 points" in text

    part = {"part": "total", "measured": True, "from": "voc e6", "to": "vocaug e6", **{
        k: tuned[k] for k in ("change", "low", "high", "mc_error", "low_mc_error", "high_mc_error")}}  # fmt: skip
    assert part_text(part, 0) == f"+2 [+1, +4{MARK}]"
    assert MARK in sentence([part])

    from attribution import markdown as attribution_markdown

    table = attribution_markdown([{**part, "question": "q", "to_measure": "", "seeds_from": 1, "seeds_to": 1}], 0.95)
    assert f"+2 [+1, +4{MARK}]" in table and "at most 1.2 points" in table
    assert findings.interval(2.0, 0.7, 4.2, 0, errors=(0.2, 1.2)).startswith(f"+2 [+1, +4{MARK}]")
