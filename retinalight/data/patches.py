"""Patches: cut an image into a grid of square patches and put them back, averaging where they overlap.

Works on numpy arrays and torch tensors alike, with the image in the last two axes (HxW, CxHxW, NxCxHxW).
Retina-GAN's protocol is `data.resize: 512` with `evaluation.patch_size: 128`: 16 non-overlapping patches,
regrouped into the 512x512 map. Written here because the dependencies offer no 2-D patch round trip
(torch's unfold/fold does not keep the grid's last patch flush with the border).
"""

from __future__ import annotations

from typing import Any


def patch_grid(height: int, width: int, size: int, overlap: int = 0) -> list[tuple[int, int]]:
    """(top, left) of patches covering a height x width image: stride size - overlap, the last row and
    column flush with the border (so no padding is needed when the image is at least size x size)."""
    if size > min(height, width):
        raise ValueError(f"a {size}x{size} patch does not fit a {height}x{width} image")
    if not 0 <= overlap < size:
        raise ValueError(f"patch overlap {overlap} must be in [0, {size})")
    stride = size - overlap

    def starts(n: int) -> list[int]:
        out = list(range(0, n - size + 1, stride))
        return out if out[-1] == n - size else [*out, n - size]

    return [(top, left) for top in starts(height) for left in starts(width)]


def extract_patches(array: Any, size: int, overlap: int = 0) -> tuple[list[Any], list[tuple[int, int]]]:
    """The patches of `array` (views, last two axes cut) and their (top, left) positions."""
    positions = patch_grid(array.shape[-2], array.shape[-1], size, overlap)
    return [array[..., top : top + size, left : left + size] for top, left in positions], positions


def merge_patches(patches: list[Any], positions: list[tuple[int, int]], shape: tuple[int, ...]) -> Any:
    """The image of `shape` rebuilt from patches; overlapping pixels get the mean of their patches."""
    first = patches[0]
    size = first.shape[-1]
    if hasattr(first, "new_zeros"):  # torch
        total, count = first.new_zeros(shape, dtype=first.dtype), first.new_zeros(shape[-2:], dtype=first.dtype)
    else:
        import numpy as np

        total, count = np.zeros(shape, np.float64), np.zeros(shape[-2:], np.float64)
    for patch, (top, left) in zip(patches, positions):
        total[..., top : top + size, left : left + size] += patch
        count[top : top + size, left : left + size] += 1
    return total / count


def grid_patches(batch: Any, size: int) -> Any:
    """An N x C x H x W tensor cut into its non-overlapping size x size grid: (N * H/size * W/size) x C x size x
    size, each image's patches in `patch_grid` order (row by row). H and W must be multiples of `size`."""
    n, c, height, width = batch.shape
    if height % size or width % size:
        raise ValueError(f"a {height}x{width} image does not split into {size}x{size} patches")
    rows, cols = height // size, width // size
    return batch.reshape(n, c, rows, size, cols, size).permute(0, 2, 4, 1, 3, 5).reshape(n * rows * cols, c, size, size)


def grid_images(patches: Any, height: int, width: int) -> Any:
    """`grid_patches` undone: the N x C x height x width images regrouped from their patches."""
    total, c, size, _ = patches.shape
    rows, cols = height // size, width // size
    n = total // (rows * cols)
    return patches.reshape(n, rows, cols, c, size, size).permute(0, 3, 1, 4, 2, 5).reshape(n, c, height, width)
