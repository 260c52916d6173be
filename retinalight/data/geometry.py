"""Zero padding to the network's input size and the exact crop back to the original image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Region:
    """Where the original image sits inside its padded copy."""

    top: int
    left: int
    height: int
    width: int

    def crop(self, array):
        """Crop the last two axes of an array or tensor back to the original image."""
        return array[..., self.top : self.top + self.height, self.left : self.left + self.width]


def padded_size(height: int, width: int, multiple: int = 16, square: bool = True) -> tuple[int, int]:
    """Smallest size >= (height, width) whose sides are multiples of `multiple` (square as in SA-UNet:
    DRIVE 584x565 -> 592x592, CHASE_DB1 960x999 -> 1008x1008)."""

    def up(n: int) -> int:
        return -(-n // multiple) * multiple

    if square:
        side = up(max(height, width))
        return side, side
    return up(height), up(width)


def pad(array: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Region]:
    """Centre `array` (HxW or HxWxC) in zeros of `size`; returns the padded array and its Region."""
    height, width = array.shape[:2]
    if height > size[0] or width > size[1]:
        raise ValueError(f"cannot pad {height}x{width} to the smaller {size[0]}x{size[1]}")
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    out = np.zeros((*size, *array.shape[2:]), dtype=array.dtype)
    out[top : top + height, left : left + width] = array
    return out, Region(top, left, height, width)


def resize_sample_arrays(
    image: np.ndarray, masks: list[np.ndarray], side: int | None = None, scale: float | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """An image and its binary masks (nearest) resized to side x side (Retina-GAN's 512x512 protocol) or by
    `scale` (scale normalisation, `retinalight.data.fov.fov_scale`): area interpolation shrinking, bilinear
    enlarging."""
    import cv2

    height, width = image.shape[:2]
    size = (side, side) if side else (max(16, round(width * scale)), max(16, round(height * scale)))
    shrink = size[0] * size[1] < height * width
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return image, [cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool) for m in masks]


def resize_back(prob: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A probability map resized (bilinear) to (height, width): predictions are scored at the original size."""
    import cv2

    return cv2.resize(prob.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
