"""HRF, High-Resolution Fundus (Budai et al. 2013): 45 images of 3504x2336 with vessel labels and FOV masks.

15 healthy (`h`), 15 diabetic retinopathy (`dr`) and 15 glaucoma (`g`) eyes. No official split exists. This
reader uses the one of Orlando et al. (IEEE TBME 2017), also used by bob.ip.binseg: images 01-05 of each group
train (15), 06-15 test (30). The publishers' all.zip holds images/ (the dr ones as .JPG), manual1/ and mask/.
At 3504x2336, train on crops or a `data.resize`: one whole image is 8 Mpixel.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from retinalight.data.datasets.base import ImageFiles, RetinaDataset, check_split, register_dataset

GROUPS = ("dr", "g", "h")
FILE = re.compile(r"^(\d\d)_(dr|g|h)(\.jpg|\.tif|_mask\.tif)$", re.IGNORECASE)
FOLDERS = {"images", "manual1", "mask"}


@register_dataset
class HRF(RetinaDataset):
    name = "hrf"
    title = "HRF"
    folder = "HRF"
    size = (2336, 3504)
    source = "https://www5.cs.fau.de/research/data/fundus-images/"
    downloads = ("https://www5.cs.fau.de/fileadmin/research/datasets/fundus-images/all.zip",)
    split_reference = "Orlando et al. 2017: images 01-05 of each group train, 06-15 test"

    def ids(self, split: str) -> list[str]:
        check_split(split)
        numbers = range(1, 6) if split == "training" else range(6, 16)
        return [f"{n:02d}_{group}" for group in GROUPS for n in numbers]

    @staticmethod
    def group(id: str) -> str:
        return {"dr": "DR", "g": "glaucoma", "h": "healthy"}[id.rpartition("_")[2]]

    def files(self, id: str) -> ImageFiles:
        published, other = (".JPG", ".jpg") if id.endswith("_dr") else (".jpg", ".JPG")
        image = self.path / "images" / f"{id}{published}"
        if not image.is_file() and image.with_suffix(other).is_file():  # a copy renamed on a case-blind system
            image = image.with_suffix(other)
        return ImageFiles(
            id=id,
            image=image,
            vessel=self.path / "manual1" / f"{id}.tif",
            fov=self.path / "mask" / f"{id}_mask.tif",
        )

    @classmethod
    def archive_path(cls, member: PurePosixPath) -> str | None:
        parts = member.parts
        if len(parts) >= 2 and parts[-2] in FOLDERS and FILE.match(member.name):
            return f"{parts[-2]}/{member.name}"
        return None
