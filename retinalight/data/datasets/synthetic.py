"""Procedural fundus-like images with branching vessel trees: smoke tests and trying retinalight with no download."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from retinalight.data.datasets.base import ImageFiles, RetinaDataset, Sample, check_split, register_dataset


@register_dataset
class SyntheticVessels(RetinaDataset):
    """`count` images of `size` pixels; the last quarter is the test split. Same seed, same images."""

    name = "synthetic"
    title = "synthetic vessel trees"
    source = "retinalight itself (generated)"
    generated = True

    def __init__(self, root=None, count: int = 16, size: int = 128, seed: int = 0):
        self.root = self.path = None
        self.count, self.size, self.seed = count, (size, size), seed

    def require(self) -> None:
        pass

    def ids(self, split: str) -> list[str]:
        check_split(split)
        n_test = max(1, self.count // 4)
        ids = [f"syn_{i:03d}" for i in range(self.count)]
        return ids[: self.count - n_test] if split == "training" else ids[self.count - n_test :]

    def files(self, id: str) -> ImageFiles:
        raise NotImplementedError("synthetic images have no files")

    def load(self, id: str) -> Sample:
        return _generate(id, self.size[0], self.seed)

    def second_observer(self, id: str):
        return None


@functools.lru_cache(maxsize=256)
def _generate(id: str, side: int, seed: int) -> Sample:
    rng = np.random.default_rng([seed, int(id.split("_")[1])])
    centre = side // 2
    fov = np.zeros((side, side), np.uint8)
    cv2.circle(fov, (centre, centre), int(side * 0.46), 1, thickness=-1)
    vessel = np.zeros((side, side), np.uint8)

    def branch(x: float, y: float, angle: float, width: float, depth: int) -> None:
        length = side * rng.uniform(0.12, 0.25)
        for _ in range(int(rng.integers(2, 5))):
            angle += rng.normal(0, 0.35)
            nx, ny = x + length / 3 * np.cos(angle), y + length / 3 * np.sin(angle)
            cv2.line(vessel, (int(x), int(y)), (int(nx), int(ny)), 1, thickness=max(1, int(round(width))))
            x, y = nx, ny
        if depth > 0:
            for turn in (-0.6, 0.6):
                branch(x, y, angle + turn + rng.normal(0, 0.2), width * 0.7, depth - 1)

    disc = (centre + rng.integers(-side // 8, side // 8), centre + rng.integers(-side // 8, side // 8))
    for angle in rng.uniform(0, 2 * np.pi, size=4):
        branch(disc[0], disc[1], angle, max(1.5, side / 60), depth=3)
    vessel &= fov
    yy, xx = np.mgrid[:side, :side]
    shade = 1 - 0.35 * np.hypot(yy - centre, xx - centre) / side
    base = np.stack([170 * shade, 80 * shade, 40 * shade], axis=-1)
    base[vessel.astype(bool)] *= 0.55
    image = base + rng.normal(0, 6, base.shape)
    image = cv2.GaussianBlur(image, (3, 3), 0) * fov[..., None]
    return Sample(id, np.clip(image, 0, 255).astype(np.uint8), vessel.astype(bool), fov.astype(bool))
