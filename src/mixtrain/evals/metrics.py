"""Per-row scores and their summary statistics: the numbers an evaluation reports.

Normalisation follows the conventions the field compares against, so a score here means what it
means in a paper: ``exact_match``/``contains`` use VQA/TextVQA answer normalisation (lowercase, no
punctuation, no articles, single spaces); ``anls`` is DocVQA's average normalised Levenshtein
similarity with its 0.5 threshold; ``vqa`` is VQA accuracy over a row's (usually 10) human answers,
min(#answers equal to the output / 3, 1). A reference may be a list of acceptable answers: a row
scores the best over them (any match for ``exact_match``/``contains``, the max for ``anls``).
Levenshtein comes from ``rapidfuzz`` (C++, well kept).
Statistics use a seeded bootstrap, so the same results always give the same intervals.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

from mixtrain.errors import InvalidInput

METRICS = ("exact_match", "contains", "anls", "vqa", "none")
ANLS_THRESHOLD = 0.5
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPACES = re.compile(r"\s+")


def normalize_answer(text: str | None) -> str:
    """VQA-style: lowercase, punctuation removed, articles removed, whitespace collapsed."""
    text = (text or "").lower()
    text = _PUNCT.sub(" ", text)  # "red." -> "red", "light-blue" -> "light blue"
    text = _ARTICLES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def exact_match(output: str | None, reference: str) -> float:
    return float(normalize_answer(output) == normalize_answer(reference))


def contains(output: str | None, reference: str) -> float:
    """The normalised reference occurs in the normalised output, on word boundaries ("red" is not in "tired")."""
    ref, out = normalize_answer(reference), normalize_answer(output)
    if not ref:
        return float(not out)
    return float(f" {ref} " in f" {out} ")


def anls(output: str | None, reference: str, threshold: float = ANLS_THRESHOLD) -> float:
    """1 − normalised Levenshtein distance, or 0 when that distance exceeds ``threshold`` (DocVQA).

    DocVQA compares lowercased, whitespace-trimmed strings (not the VQA normalisation).
    """
    from rapidfuzz.distance import Levenshtein

    out = _SPACES.sub(" ", (output or "").lower()).strip()
    ref = _SPACES.sub(" ", (reference or "").lower()).strip()
    if not out and not ref:
        return 1.0
    distance = Levenshtein.normalized_distance(out, ref)  # distance / max(len(out), len(ref))
    return 0.0 if distance > threshold else 1.0 - distance


def vqa_accuracy(output: str | None, references: list[str]) -> float:
    """VQA accuracy: an answer is right when at least 3 annotators gave it (VQA normalisation)."""
    out = normalize_answer(output)
    return min(sum(normalize_answer(r) == out for r in references) / 3, 1.0)


SCORERS: dict[str, Callable[[str | None, str], float]] = {
    "exact_match": exact_match,
    "contains": contains,
    "anls": anls,
}


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidInput(f"unknown metric {metric!r}", f"use one of: {', '.join(METRICS)}")
    return metric


def references(reference) -> list[str]:
    """A reference cell as its list of acceptable answers (a list cell, or one text)."""
    if reference is None:
        return [""]
    if isinstance(reference, (list, tuple)):
        return [str(r) for r in reference if r is not None] or [""]
    return [str(reference)]


def score(metric: str, output: str | None, reference: str | list[str] | None) -> float | None:
    """The row's score, or None for ``none`` (outputs only) and for rows without an output.

    A list of references scores the best match (``vqa`` counts the matching answers instead)."""
    if metric == "none" or output is None:
        return None
    refs = references(reference)
    if check_metric(metric) == "vqa":
        return vqa_accuracy(output, refs)
    return max(SCORERS[metric](output, r) for r in refs)


def bootstrap_ci(
    scores: list[float], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling rows with replacement)."""
    import numpy as np

    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(samples, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def summarize(scores: list[float | None]) -> dict:
    """mean, 95% CI and n over the rows that have a score (failed rows carry None and are not counted)."""
    kept = [s for s in scores if s is not None]
    if not kept:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    low, high = bootstrap_ci(kept)
    return {"mean": sum(kept) / len(kept), "ci_low": low, "ci_high": high, "n": len(kept)}


def paired_bootstrap(
    a: list[float | None], b: list[float | None], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict:
    """Difference of means a − b over the rows both scored, its 95% CI and a two-sided p-value.

    Rows are resampled together (paired), which is what makes two models scored on the same rows
    comparable with few rows. The p-value tests "no difference" by recentring the bootstrap
    distribution of the mean difference on zero (Efron & Tibshirani 16.4; Koehn 2004):
    p = (#{|d* − d̄| ≥ |d̄|} + 1) / (B + 1), so it is never reported as exactly 0.
    """
    import numpy as np

    pairs = [(x, y) for x, y in zip(a, b, strict=False) if x is not None and y is not None]
    if not pairs:
        return {"diff": None, "ci_low": None, "ci_high": None, "p_value": None, "n": 0}
    d = np.asarray([x - y for x, y in pairs], dtype=float)
    observed = float(d.mean())
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(samples, d.size))].mean(axis=1)
    extreme = int(np.sum(np.abs(means - observed) >= abs(observed) - 1e-12))
    return {
        "diff": observed,
        "ci_low": float(np.quantile(means, 0.025)),
        "ci_high": float(np.quantile(means, 0.975)),
        "p_value": (extreme + 1) / (samples + 1),
        "n": int(d.size),
    }
