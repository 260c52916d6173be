"""Binned ROC AUC counted with one histogram per update: per-epoch validation's AUC.

torchmetrics' BinaryAUROC with thresholds loops over them once an update has over 50,000 pixels: 1000
passes over each DRIVE image's 250,000 FOV pixels (thousands of small kernels on a GPU, 0.2-0.6 s an image
on a CPU). One histogram of how many thresholds each prediction reaches gives the same counts in a few
kernels (8 ms on the CPU); torchmetrics has no such path, hence this file.
"""

from __future__ import annotations

import torch
from torchmetrics.classification import BinaryAUROC
from torchmetrics.functional.classification.precision_recall_curve import _binary_precision_recall_curve_format


def histogram_confmat(preds: torch.Tensor, target: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """The (thresholds, 2, 2) confusion matrices of `preds >= t` against 0/1 `target` for every t, as
    torchmetrics lays them out ([[tn, fp], [fn, tp]])."""
    reached = torch.bucketize(preds, thresholds, right=True)  # how many thresholds are <= pred: pred >= t_i for i < reached
    counts = torch.bincount(reached * 2 + target.long(), minlength=2 * (len(thresholds) + 1)).view(-1, 2)
    at_least = counts.flip(0).cumsum(0).flip(0)[1:]  # [negatives, positives] with pred >= t_i
    total = counts.sum(0)
    fp, tp = at_least[:, 0], at_least[:, 1]
    return torch.stack([torch.stack([total[0] - fp, fp], -1), torch.stack([total[1] - tp, tp], -1)], 1)


class HistogramAUROC(BinaryAUROC):
    """BinaryAUROC(thresholds=N) whose update is `histogram_confmat`: the same states, so the same AUC and DDP sync."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target, _ = _binary_precision_recall_curve_format(preds, target, self.thresholds, self.ignore_index, self.normalization)
        self.confmat += histogram_confmat(preds, target, self.thresholds)
