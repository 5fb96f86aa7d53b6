"""Intervals whose printed digits their Monte Carlo error supports, seed-aware intervals, the generalization gaps."""

import numpy as np
import pytest

from common.stats import (
    at_most,
    decimals_for,
    iou_from_confusion,
    paired_bootstrap,
    percentile_interval,
    set_bootstrap,
)
from compare_per_class import footnote, markdown, table_rows


def images_with(iou_pairs, classes=3):
    """Per-image confusions where image i has, for class 1, intersection/union given by
    ``iou_pairs[i]`` = (intersection, false negatives, false positives); class 0 fills the rest."""
    per_image = np.zeros((len(iou_pairs), classes, classes))
    for i, (hit, missed, extra) in enumerate(iou_pairs):
        per_image[i, 1, 1] = hit
        per_image[i, 1, 0] = missed
        per_image[i, 0, 1] = extra
        per_image[i, 0, 0] = 1000
    return per_image


def test_monte_carlo_error_of_a_bound_is_what_it_says():
    """On draws from a known distribution, the stated error is the bound's real spread."""
    rng = np.random.default_rng(0)
    bounds, errors = [], []
    for _ in range(200):
        interval = percentile_interval(rng.normal(0, 1, (2000, 1)), 0.95)
        bounds.append(interval["high"][0])
        errors.append(interval["high_error"][0])
    # the exact 97.5% quantile of N(0, 1) is 1.95996; the spread over repetitions is the error
    assert abs(np.mean(bounds) - 1.95996) < 0.01
    assert np.std(bounds) == pytest.approx(np.mean(errors), rel=0.25)


def test_reported_bound_lies_within_its_error_of_the_many_resample_bound():
    """Synthetic per-image confusions: the default's bounds against 400,000 resamples."""
    rng = np.random.default_rng(1)
    n = 60
    pairs_a = [(rng.integers(50, 500), rng.integers(0, 200), rng.integers(0, 200)) for _ in range(n)]
    pairs_b = [(h + rng.integers(0, 100), m, e) for h, m, e in pairs_a]
    a, b = images_with(pairs_a), images_with(pairs_b)
    reference = paired_bootstrap([a], [b], resamples=400_000, seed=99)
    for seed in range(3):
        result = paired_bootstrap([a], [b], resamples=2000, max_resamples=64000, mc_error=0.0005, seed=seed)
        for side in ("low", "high"):
            error = result[f"change_{side}_error"][1]
            gap = abs(result[f"change_{side}"][1] - reference[f"change_{side}"][1])
            assert gap <= 3 * error + 3 * reference[f"change_{side}_error"][1], (side, gap, error)
        assert result["mc_error"] <= 0.0005 or result["resamples"] == 64000


def test_the_default_error_on_a_small_rare_class_case_is_below_the_printed_precision():
    """The issue's case: a rare class on 30 images, where 1,000 resamples moved a bound by
    10 points between RNG seeds.  The default resamples until the error is small, and
    the table prints no digit finer than that error."""
    rng = np.random.default_rng(2)
    present = [(300, 200, 100), (40, 400, 50), (200, 20, 10), (500, 100, 300), (80, 60, 0)]
    pairs = [(0, 0, int(rng.integers(0, 40))) for _ in range(25)] + present  # in 5 of 30 images
    better = [(h + 30 if h else 0, max(m - 30, 0) if h else 0, e // 2) for h, m, e in pairs]
    a, b = images_with(pairs), images_with(better)
    highs, errors = [], []
    for seed in range(6):
        result = paired_bootstrap([a], [b], seed=seed, max_resamples=64000, mc_error=0.0005)
        highs.append(result["change_high"][1] * 100)
        errors.append(max(result["change_low_error"][1], result["change_high_error"][1]) * 100)
    decimals = decimals_for(max(errors))
    assert max(errors) < 10.0**-decimals  # below the printed precision
    assert np.ptp(np.round(highs, decimals)) <= 10.0**-decimals  # the printed bound moves a digit at most
    old = [paired_bootstrap([a], [b], resamples=1000, seed=s)["change_high"][1] * 100 for s in range(6)]
    assert np.ptp(highs) < np.ptp(old)


def test_decimals_follow_the_error():
    assert decimals_for(0.01) == 1
    assert decimals_for(0.05) == 1
    assert decimals_for(0.06) == 0
    assert decimals_for(3.0) == 0


def test_absent_classes_are_left_out_of_a_resample_the_same_way_for_both_variants():
    a = images_with([(100, 10, 10), (0, 0, 5), (0, 0, 0)])  # class 1 only in image 0
    result = paired_bootstrap([a], [a], resamples=4000, seed=0)
    # P(image 0 not drawn in 3 draws) = (2/3)^3: those resamples have no class-1 truth
    assert result["left_out"][1] == pytest.approx((2 / 3) ** 3, abs=0.03)
    assert np.isnan(result["left_out"][2]) or result["left_out"][2] == 1.0  # never any truth of class 2
    assert result["change_low"][1] == result["change_high"][1] == 0


def test_seed_intervals_cover_seed_variation_with_a_known_answer():
    """Every image identical: images add no variation, so the interval is the seeds'.
    Two baseline seeds with IoU 0.4 and 0.6: a resample's mean of two seeds drawn with
    replacement is 0.4, 0.5 or 0.6 (1/4, 1/2, 1/4): the 95% interval is [0.4, 0.6]."""
    n = 20
    seed_a = images_with([(40, 30, 30)] * n)  # IoU 40/100
    seed_b = images_with([(60, 20, 20)] * n)  # IoU 60/100
    other = images_with([(80, 10, 10)] * n)  # IoU 0.8
    result = paired_bootstrap([seed_a, seed_b], [other], resamples=4000, seed=0)
    assert result["baseline"][1] == pytest.approx(0.5)
    assert result["baseline_low"][1] == pytest.approx(0.4)
    assert result["baseline_high"][1] == pytest.approx(0.6)
    assert result["change_low"][1] == pytest.approx(0.2) and result["change_high"][1] == pytest.approx(0.4)
    one_seed = paired_bootstrap([seed_a], [other], resamples=4000, seed=0)
    assert one_seed["baseline_low"][1] == one_seed["baseline_high"][1] == pytest.approx(0.4)


def test_set_bootstrap_gaps_and_shared_seeds():
    n = 25
    train = [images_with([(90, 5, 5)] * n), images_with([(70, 15, 15)] * n)]  # IoU 0.9, 0.7
    val = [images_with([(60, 20, 20)] * 40), images_with([(40, 30, 30)] * 40)]  # IoU 0.6, 0.4
    result = set_bootstrap({"train": train, "val": val}, [("train", "val")], resamples=4000, seed=0)
    # mIoU over classes 0 and 1 (class 2 has no truth)
    iou0 = lambda hit, miss, extra: 1000 / (1000 + extra + miss)  # noqa: E731
    expect_train = np.mean([(iou0(90, 5, 5) + 0.9) / 2, (iou0(70, 15, 15) + 0.7) / 2])
    assert result["train"]["value"] == pytest.approx(expect_train)
    # the same seed is drawn for both sets of a resample: the gap of each seed's model is
    # about 0.15, and never mixes seed 0 on train with seed 1 on val (which would give 0.25)
    gap = result["train − val"]
    assert gap["low"] == pytest.approx(gap["high"], abs=0.02)
    assert gap["value"] == pytest.approx(result["train"]["value"] - result["val"]["value"])


def test_per_class_table_prints_the_decimals_its_error_supports(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 21, (300, 50))
    per_image = np.zeros((300, 21, 21))
    for i in range(300):
        np.add.at(per_image[i], (labels[i], np.where(rng.random(50) < 0.7, labels[i], 0)), 1)
    better = per_image.copy()
    result = paired_bootstrap([per_image], [better], resamples=2000, max_resamples=8000, mc_error=0.0005)
    results = {"e6": {k: (v if k in ("resamples", "left_out") else v * 100) for k, v in result.items()}}
    results["e6"]["seeds"], results["e6"]["images"] = (1, 1), 300
    text = markdown(results, table_rows(results, ["voc", "vocaug"]), ["voc", "vocaug"], 8.0, 0.95)
    error = max(np.nanmax(results["e6"]["change_low_error"]), np.nanmax(results["e6"]["change_high_error"]))
    decimals = decimals_for(error)
    background = next(line for line in text.splitlines() if line.startswith("| background"))
    value = background.split("|")[2].strip()
    assert (len(value.split(".")[1]) if "." in value else 0) == decimals
    assert f"at most {at_most(error)} points" in footnote(results, ["voc", "vocaug"], 0.95)
    assert iou_from_confusion(per_image.sum(0))[0] * 100 == pytest.approx(float(value), abs=10.0**-decimals)
