"""Metrics: torchmetrics collections, FOV/image protocols, pooled and per-image scoring of any predictions."""

from retinalight.metrics.folder import evaluate_folder
from retinalight.metrics.segmentation import METRICS, PROTOCOLS, Prediction, evaluate_predictions, metric_collection, select_pixels

__all__ = ["METRICS", "PROTOCOLS", "Prediction", "evaluate_folder", "evaluate_predictions", "metric_collection", "select_pixels"]
