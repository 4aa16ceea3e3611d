"""Eval metrics on hand-made cases whose answers are known (VQA/DocVQA conventions)."""

from __future__ import annotations

import pytest

from mixtrain.errors import InvalidInput
from mixtrain.evals.metrics import (
    anls,
    bootstrap_ci,
    check_metric,
    contains,
    exact_match,
    normalize_answer,
    paired_bootstrap,
    score,
    summarize,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Red.", "red"),
        ("  The   RED  ball! ", "red ball"),
        ("an apple", "apple"),
        ("theory", "theory"),  # "the" only as a word
        ("light-blue", "light blue"),
        (None, ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    "output, reference, expected",
    [
        ("Red.", "red", 1.0),
        ("the red", "Red", 1.0),
        ("red circle", "red", 0.0),
        ("blue", "red", 0.0),
        ("", "red", 0.0),
    ],
)
def test_exact_match(output, reference, expected):
    assert exact_match(output, reference) == expected


@pytest.mark.parametrize(
    "output, reference, expected",
    [
        ("It is a red circle.", "red", 1.0),
        ("RED", "red", 1.0),
        ("tired", "red", 0.0),  # word boundary: "red" does not occur in "tired"
        ("blue square", "red", 0.0),
        ("a dark red shape", "dark red", 1.0),
    ],
)
def test_contains(output, reference, expected):
    assert contains(output, reference) == expected


@pytest.mark.parametrize(
    "output, reference, expected",
    [
        ("invoice", "invoice", 1.0),
        ("Invoice ", "invoice", 1.0),  # case and surrounding space do not count
        ("invoce", "invoice", 1 - 1 / 7),  # one deletion over 7 characters
        ("abcd", "abcdefgh", 0.5),  # distance exactly 0.5: kept (threshold is "more than 0.5")
        ("abc", "abcdefgh", 0.0),  # distance 5/8 > 0.5: zero
        ("", "", 1.0),
        ("", "x", 0.0),
    ],
)
def test_anls(output, reference, expected):
    assert anls(output, reference) == pytest.approx(expected)


def test_score_dispatch_and_none():
    assert score("exact_match", "Red", "red") == 1.0
    assert score("none", "Red", "red") is None
    assert score("contains", None, "red") is None  # a failed row has no output and no score
    with pytest.raises(InvalidInput, match="unknown metric 'bleu'"):
        check_metric("bleu")


def test_summarize_mean_ci_and_failed_rows():
    s = summarize([1.0, 0.0, 1.0, 1.0, None])
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.75)
    assert 0.0 <= s["ci_low"] <= 0.75 <= s["ci_high"] <= 1.0
    assert summarize([None, None]) == {"mean": None, "ci_low": None, "ci_high": None, "n": 0}


def test_bootstrap_ci_degenerate_and_reproducible():
    assert bootstrap_ci([1.0] * 20) == (1.0, 1.0)
    scores = [1.0, 0.0] * 25
    assert bootstrap_ci(scores) == bootstrap_ci(scores)  # seeded
    low, high = bootstrap_ci(scores)
    assert 0.3 < low < 0.5 < high < 0.7  # ±1.96·sqrt(.25/50) ≈ ±0.14


def test_paired_bootstrap_clear_difference():
    a, b = [1.0] * 40, [0.0] * 40
    r = paired_bootstrap(a, b)
    assert r["diff"] == 1.0 and r["n"] == 40
    assert r["p_value"] < 0.001


def test_paired_bootstrap_no_difference():
    a = [1.0, 0.0] * 20
    r = paired_bootstrap(a, list(a))
    assert r["diff"] == 0.0 and r["p_value"] == 1.0


def test_paired_bootstrap_small_noisy_difference_is_not_significant():
    a = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    b = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    r = paired_bootstrap(a, b)
    assert r["diff"] == pytest.approx(0.125)
    assert r["p_value"] > 0.3
    assert r["ci_low"] < 0 < r["ci_high"]


def test_paired_bootstrap_skips_rows_either_side_failed():
    r = paired_bootstrap([1.0, None, 1.0], [0.0, 1.0, None])
    assert r["n"] == 1 and r["diff"] == 1.0


# -- list references (VQA's ten answers, DocVQA's several) --------------------------------------------


@pytest.mark.parametrize(
    "metric, output, refs, expected",
    [
        ("exact_match", "Reddish.", ["red", "reddish"], 1.0),  # any reference
        ("exact_match", "blue", ["red", "reddish"], 0.0),
        ("contains", "it is dark red", ["crimson", "red"], 1.0),
        ("contains", "tired", ["red"], 0.0),
        ("anls", "invoice", ["invoice no", "invoce"], pytest.approx(1 - 1 / 7)),  # max over references
        ("anls", "zzz", ["invoice", "receipt"], 0.0),
        ("vqa", "red", ["red"] * 2 + ["blue"] * 8, pytest.approx(2 / 3)),
        ("vqa", "Red", ["red"] * 3 + ["blue"] * 7, 1.0),
        ("vqa", "red", ["red"] * 9 + ["blue"], 1.0),  # capped at 1
        ("vqa", "green", ["red"] * 9 + ["blue"], 0.0),
        ("vqa", "red", "red", pytest.approx(1 / 3)),  # one text reference counts once
    ],
)
def test_list_references_score_the_best_match(metric, output, refs, expected):
    assert score(metric, output, refs) == expected


def test_one_reference_in_a_list_scores_like_the_text():
    for metric in ("exact_match", "contains", "anls"):
        for out in ("red", "a red one", "rad"):
            assert score(metric, out, ["red"]) == score(metric, out, "red")


def test_vqa_is_a_known_metric_and_skips_rows_without_output():
    assert check_metric("vqa") == "vqa"
    assert score("vqa", None, ["red"]) is None
