"""Contrast-limited adaptive histogram equalisation (OpenCV), on the lightness, green or grey channel."""

from __future__ import annotations

import cv2
import numpy as np

CHANNELS = ("lab", "green", "gray")


def clahe(image: np.ndarray, clip_limit: float = 2.0, tile_grid: int = 8, channel: str = "green") -> np.ndarray:
    """CLAHE of an HxWx3 uint8 RGB image, HxWx3 uint8 out.

    channel: "lab" equalises the L of CIELAB and keeps the colour; "green" (the channel where vessels
    contrast most, the usual choice in vessel segmentation) and "gray" equalise one channel and repeat it
    three times, so every model keeps its 3-channel input."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"clahe expects an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    if channel not in CHANNELS:
        raise ValueError(f"clahe channel {channel!r}: choose from {', '.join(CHANNELS)}")
    equalise = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tile_grid), int(tile_grid))).apply
    if channel == "lab":
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        lab[..., 0] = equalise(np.ascontiguousarray(lab[..., 0]))
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    plane = np.ascontiguousarray(image[..., 1]) if channel == "green" else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(equalise(plane)[..., None], 3, axis=2)
