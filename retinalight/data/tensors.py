"""Fundus images and masks as network inputs: per-image standardisation shared by training and inference."""

from __future__ import annotations

import numpy as np
import torch


def channel_stats(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (in [0, 1] units) over the image's non-black pixels (the retina)."""
    pixels = image[image.max(axis=2) > 10].astype(np.float32) / 255
    if len(pixels) < 16:
        return np.zeros(3, np.float32), np.ones(3, np.float32)
    return pixels.mean(axis=0), pixels.std(axis=0) + 1e-3


def image_to_tensor(image: np.ndarray, stats: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float, standardised per channel with `stats` (default: the image's own).

    The SA-UNet code divides by 255; per-image standardisation (a common choice, and what retinalight uses
    for every model) evens out colour and exposure differences between cameras. Training crops pass the
    stats of their whole source image, so that train and test inputs are normalised alike."""
    mean, std = stats if stats is not None else channel_stats(image)
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255)
    return (x - torch.from_numpy(mean)[:, None, None]) / torch.from_numpy(std)[:, None, None]


def to_tensors(image: np.ndarray, vessel: np.ndarray, fov: np.ndarray, stats=None) -> dict[str, torch.Tensor]:
    """HxWx3 uint8 + HxW masks -> float tensors: image 3xHxW (`image_to_tensor`), vessel and fov 1xHxW in {0, 1}."""
    return {
        "image": image_to_tensor(image, stats),
        "vessel": torch.from_numpy(np.ascontiguousarray(vessel)).float()[None],
        "fov": torch.from_numpy(np.ascontiguousarray(fov)).float()[None],
    }
