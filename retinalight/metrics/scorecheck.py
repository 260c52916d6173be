"""Which evaluation protocol a published ACC / SE / SP (and F1) can have come from.

Given a test set's pixel counts, most protocol hypotheses are arithmetically impossible for rounded scores.
mlscorecheck (Fazekas & Kovacs; optional: `pip install retinalight[check]`) decides each one exactly, from
the per-image positive and negative counts it bundles for DRIVE and CHASE_DB1 (first annotator):
- region: `fov` (pixels inside the field of view) or `image` (every pixel);
- aggregation: `pooled` (one confusion matrix over the test set, mlscorecheck's "score of means") or
  `mean` (scores averaged over images, "mean of scores": a linear program, hence the timeout).
"""

from __future__ import annotations

import functools
import logging
import math

from retinalight.errors import RetinalightError

REGIONS = {"fov": "fov", "image": "all"}  # ours -> mlscorecheck's assumption
AGGREGATIONS = ("pooled", "mean")
SCORE_NAMES = {"acc": "acc", "se": "sens", "sp": "spec", "f1": "f1"}  # ours -> mlscorecheck's
MEAN_SCORES = ("acc", "se", "sp")  # what the mean-of-scores test takes
INSTALL = "score checks need mlscorecheck: pip install 'retinalight[check]' (or pip install mlscorecheck)"


def decimals_of(value: float | str) -> int:
    """Decimal places as written (0.9698 -> 4): a published number's precision."""
    text = value if isinstance(value, str) else repr(float(value))
    return len(text.partition(".")[2]) if "e" not in text.lower() else 6


def tolerance(scores: dict[str, float | str], eps: float | None = None, decimals: int | None = None) -> float:
    """`eps`, else half a unit in the last of `decimals` places, else in the last place of the scores as
    published: the most decimals any of them has (a table prints every column alike; a float drops trailing
    zeros, 0.980 -> 0.98)."""
    if eps is not None:
        return eps
    return 0.5 * 10.0 ** -(decimals if decimals is not None else max(decimals_of(v) for v in scores.values()))


def _bundle(dataset: str, split: str):
    """(pooled check, mean check, images) of mlscorecheck for `dataset`; regions it has no counts for are None."""
    try:
        from mlscorecheck.check.bundles import retina
    except ImportError:
        raise RetinalightError(INSTALL) from None
    logging.getLogger("mlscorecheck").setLevel(logging.WARNING)
    if dataset == "drive":
        images = {"test": "test", "training": "train"}[split]
        return (
            lambda region, scores, eps: retina.check_drive_vessel_aggregated_som_assumption(images, region, 1, scores, eps),
            lambda region, scores, eps, timeout: retina.check_drive_vessel_aggregated_mos_assumption(
                images, region, 1, scores, eps, timeout=timeout, verbosity=0
            ),
            {"fov", "all"},
        )
    if dataset == "chase_db1":  # no official FOV masks: mlscorecheck counts whole images only
        from retinalight.data.datasets import get_dataset

        ids = [i.removeprefix("Image_") for i in get_dataset("chase_db1", ".").ids(split)]
        return (
            lambda region, scores, eps: retina.check_chasedb1_vessel_aggregated_som(ids, "manual1", scores, eps),
            lambda region, scores, eps, timeout: retina.check_chasedb1_vessel_aggregated_mos(
                ids, "manual1", scores, eps, timeout=timeout, verbosity=0
            ),
            {"all"},
        )
    raise RetinalightError(f"--dataset {dataset}: mlscorecheck bundles DRIVE and CHASE_DB1 here (drive, chase_db1)")


def check_scores(dataset: str, split: str, scores: dict[str, float], eps: float, timeout: float = 30.0) -> list[dict]:
    """One row per region x aggregation: {"region", "aggregation", "verdict"}, the verdict one of
    "consistent", "inconsistent", "no counts" (mlscorecheck has none for that region) or "undecided"
    (the solver timed out or failed). Cached per process: a summary asks again for the same rows."""
    return [dict(row) for row in _checked(dataset, split, tuple(sorted(scores.items())), eps, timeout)]


@functools.lru_cache(maxsize=256)
def _checked(dataset: str, split: str, scores: tuple, eps: float, timeout: float) -> tuple:
    scores = dict(scores)
    pooled, mean, regions = _bundle(dataset, split)
    theirs = {SCORE_NAMES[k]: float(v) for k, v in scores.items() if v is not None and k in SCORE_NAMES}
    rows = []
    for region, assumption in REGIONS.items():
        for aggregation in AGGREGATIONS:
            if assumption not in regions:
                verdict = "no counts"
            else:
                try:
                    if aggregation == "pooled":
                        result = pooled(assumption, theirs, eps)
                    else:
                        subset = {SCORE_NAMES[k]: theirs[SCORE_NAMES[k]] for k in MEAN_SCORES if SCORE_NAMES[k] in theirs}
                        result = mean(assumption, subset, eps, math.ceil(timeout))
                    verdict = "inconsistent" if result["inconsistency"] else "consistent"
                    if aggregation == "mean" and result.get("lp_status") not in (None, "feasible", "infeasible"):
                        verdict = "undecided"
                except Exception:  # a solver failure leaves the question open; it never stops a summary
                    verdict = "undecided"
            rows.append({"region": region, "aggregation": aggregation, "verdict": verdict})
    return tuple(rows)


def consistent_with(rows: list[dict]) -> str:
    """'image, pooled; image, mean' or 'none' (the form a summary prints beside a paper row), with what
    could not be decided."""
    text = "; ".join(f"{r['region']}, {r['aggregation']}" for r in rows if r["verdict"] == "consistent") or "none"
    missing = sorted({r["region"] for r in rows if r["verdict"] == "no counts"})
    undecided = [f"{r['region']}, {r['aggregation']}" for r in rows if r["verdict"] == "undecided"]
    notes = []
    if missing:
        notes.append(f"no {'/'.join(missing).upper()} pixel counts for this dataset")
    if undecided:
        notes.append(f"undecided: {'; '.join(undecided)}")
    return text + (f" ({'; '.join(notes)})" if notes else "")
