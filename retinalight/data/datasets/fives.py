"""FIVES (Jin et al., Sci Data 2022): 800 colour fundus photos of 2048x2048 with vessel labels, CC BY 4.0.

200 each of normal eyes (N), age-related macular degeneration (A), diabetic retinopathy (D) and glaucoma (G);
the publishers' split: 600 train, 200 test. Published on figshare as one .rar whose top folder is "FIVES A
Fundus Image Dataset for AI-based Vessel Segmentation", holding {train,test}/{Original,Ground truth}/<n>_<A|D|G|N>.png.
The same file name exists in both splits, so an image is keyed by split and name: train_1_A, test_1_A. No FOV
masks are published (computed from each photo). Some labels are stored in three channels: a pixel is vessel
where any channel is 255 (`read_binary(..., any_channel=True)`). Real FIVES is not on the development machine:
the reader is tested on files generated in this layout.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import numpy as np

from retinalight.data.datasets.base import ImageFiles, RetinaDataset, check_split, register_dataset
from retinalight.data.io import read_binary

GROUPS = {"A": "AMD", "D": "DR", "G": "glaucoma", "N": "normal"}
FILE = re.compile(r"^(\d+)_([ADGN])\.png$", re.IGNORECASE)
SPLIT_FOLDERS = {"training": "train", "test": "test"}
PARTS = ("Original", "Ground truth")


@register_dataset
class Fives(RetinaDataset):
    name = "fives"
    title = "FIVES"
    folder = "FIVES"
    size = (2048, 2048)
    fov_masks = False
    source = (
        "https://doi.org/10.6084/m9.figshare.19688169 (one .rar: extract it with `unar`, `unrar x` or `bsdtar -xf`, "
        "then import the extracted folder)"
    )
    split_reference = "the publishers' (600 train, 200 test)"
    published_counts = {"training": 600, "test": 200}

    def ids(self, split: str) -> list[str]:
        """The images present, in the publishers' numbering (the file names carry each image's group)."""
        check_split(split)
        folder = self.path / SPLIT_FOLDERS[split] / PARTS[0]
        names = [p.stem for p in folder.iterdir() if FILE.match(p.name)] if folder.is_dir() else []
        return [f"{SPLIT_FOLDERS[split]}_{n}" for n in sorted(names, key=lambda n: int(n.split("_")[0]))]

    def files(self, id: str) -> ImageFiles:
        split, _, name = id.partition("_")
        base = self.path / split
        return ImageFiles(id=id, image=base / PARTS[0] / f"{name}.png", vessel=base / PARTS[1] / f"{name}.png", fov=None)

    def read_vessel(self, path: Path) -> np.ndarray:
        return read_binary(path, any_channel=True)

    @staticmethod
    def group(id: str) -> str:
        """The eye's diagnosis group (normal, AMD, DR, glaucoma), from its file name."""
        return GROUPS[id.rpartition("_")[2].upper()]

    @classmethod
    def archive_path(cls, member: PurePosixPath) -> str | None:
        parts = member.parts
        if len(parts) >= 3 and FILE.match(member.name) and parts[-2] in PARTS and parts[-3] in SPLIT_FOLDERS.values():
            return f"{parts[-3]}/{parts[-2]}/{member.name}"
        return None
