"""Vessel segmentation metrics on probability maps: SE, SP, ACC, F1, MCC, AUC, FOV or whole-image protocol,
pooled over all test pixels and per image. Works on arrays only, so any method's output can be scored."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from retinalight.errors import UnknownNameError, close_matches

if TYPE_CHECKING:
    from torchmetrics import MetricCollection

METRICS = ("se", "sp", "acc", "f1", "mcc", "auc")
PROTOCOLS = {
    "fov": "pixels inside the field of view of the original-size image",
    "image": "every pixel of the original-size image (SA-UNet's protocol)",
}


def metric_collection(threshold: float = 0.5, auc_thresholds: int | None = None, prefix: str = "", sync: bool = True) -> MetricCollection:
    """torchmetrics collection of the six metrics. Pass probabilities, never logits.

    `auc_thresholds=None` is the exact ROC AUC (keeps every pixel); an int bins it (constant memory), which
    is what per-epoch validation uses. `sync=False` scores in this process only, even under DDP (testing
    runs on rank 0 alone). torchmetrics' argument checks are off: they run `torch.unique` over every
    update (two thirds of the time of scoring DRIVE), and the callers pass sigmoid probabilities and 0/1
    targets by construction (`evaluate --pred-dir` checks the files it reads).
    """
    from torchmetrics import MetricCollection  # here, not at import: `evaluate --help` and config loading stay light
    from torchmetrics.classification import (
        BinaryAccuracy,
        BinaryAUROC,
        BinaryF1Score,
        BinaryMatthewsCorrCoef,
        BinaryRecall,
        BinarySpecificity,
    )

    from retinalight.metrics.histogram import HistogramAUROC

    kw = {"sync_on_compute": sync, "validate_args": False}
    return MetricCollection(
        {
            "se": BinaryRecall(threshold, **kw),
            "sp": BinarySpecificity(threshold, **kw),
            "acc": BinaryAccuracy(threshold, **kw),
            "f1": BinaryF1Score(threshold, **kw),
            "mcc": BinaryMatthewsCorrCoef(threshold, **kw),
            "auc": (BinaryAUROC if auc_thresholds is None else HistogramAUROC)(thresholds=auc_thresholds, **kw),
        },
        prefix=prefix,
    )


@contextmanager
def exact_counting_kernels():
    """Let torchmetrics use bincount even when deterministic algorithms are on: otherwise it replaces
    bincount with an N x bins comparison (tens of GB for one image). Counts are integers: exact either way."""
    enabled, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise UnknownNameError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}{close_matches(protocol, PROTOCOLS)}")


def select_pixels(prob, vessel, fov, protocol: str):
    """Flatten the pixels a protocol counts: `fov` keeps those inside the FOV, `image` keeps all.
    Inputs must already be cropped to the original image (no padding)."""
    check_protocol(protocol)
    if protocol == "fov":
        keep = fov.bool() if isinstance(fov, torch.Tensor) else torch.tensor(np.asarray(fov, bool))
        return prob[keep], vessel[keep]
    return prob.reshape(-1), vessel.reshape(-1)


@dataclass(frozen=True)
class Prediction:
    """A probability map and its ground truth at original size."""

    id: str
    prob: np.ndarray  # HxW float in [0, 1]
    vessel: np.ndarray  # HxW bool
    fov: np.ndarray  # HxW bool


def _as_dict(values: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(values[k]) for k in METRICS}


def _pooled(collection: MetricCollection) -> dict[str, float]:
    with exact_counting_kernels():
        return _as_dict(collection.compute())


def evaluate_predictions(predictions: Iterable[Prediction], protocol: str = "fov", threshold: float = 0.5) -> dict:
    """Score a test set: pooled (one confusion matrix and one exact ROC over all pixels) and per image
    (with mean and std over images), the pixel METRICS and the TOPOLOGY ones (`retinalight.metrics.topology`,
    on the map binarised at `threshold` as F1 is; their mean and std over images under "topology", with the
    patch protocol). Returns the JSON layout of `retinalight.evaluate`."""
    from retinalight.metrics.topology import PATCHES, TOPOLOGY, topology_scores

    check_protocol(protocol)
    pooled, single = metric_collection(threshold, sync=False), metric_collection(threshold, sync=False)
    per_image = []
    for pred in predictions:
        if pred.prob.shape != pred.vessel.shape:
            raise ValueError(f"{pred.id}: prediction {pred.prob.shape} and annotation {pred.vessel.shape} differ in size")
        prob, target = select_pixels(
            torch.tensor(np.asarray(pred.prob, np.float32)), torch.tensor(np.asarray(pred.vessel, bool)), pred.fov, protocol
        )
        target = target.long()
        with exact_counting_kernels():
            pooled.update(prob, target)
            single.update(prob, target)  # update + compute, not forward: a collection's forward skips its compute groups
            per_image.append({"id": pred.id, **_as_dict(single.compute())})
            single.reset()
        per_image[-1] |= topology_scores(pred.prob > threshold, pred.vessel, pred.fov, protocol, index=len(per_image) - 1)
    if not per_image:
        raise ValueError("no predictions to evaluate")
    mean, std = _mean_std(per_image, METRICS)
    topology_mean, topology_std = _mean_std(per_image, TOPOLOGY)
    return {
        "protocol": protocol,
        "threshold": threshold,
        "pooled": _pooled(pooled),
        "per_image": per_image,
        "mean": mean,
        "std": std,
        "topology": {"mean": topology_mean, "std": topology_std, "patches": PATCHES.describe()},
    }


def _mean_std(rows: list[dict], keys: tuple[str, ...]) -> tuple[dict, dict]:
    table = np.array([[row[k] for k in keys] for row in rows], dtype=float)
    std = table.std(axis=0, ddof=1 if len(table) > 1 else 0)
    return dict(zip(keys, table.mean(axis=0).tolist())), dict(zip(keys, std.tolist()))
