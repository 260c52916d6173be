"""DRIVE (Staal et al. 2004): 40 images of 565x584, training 21-40, test 01-20, official FOV masks."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from retinalight.data.datasets.base import ImageFiles, RetinaDataset, check_split, register_dataset

FILE = re.compile(r"^(\d\d)_(training|test)(_mask)?\.(tif|gif)$|^(\d\d)_manual[12]\.gif$")
FOLDERS = {"images", "1st_manual", "2nd_manual", "mask"}


@register_dataset
class Drive(RetinaDataset):
    name = "drive"
    title = "DRIVE"
    folder = "DRIVE"
    size = (584, 565)
    source = "https://drive.grand-challenge.org (registration required; import its training.zip and test.zip)"
    split_reference = "the publishers' (Staal et al. 2004)"
    checksums = "drive.sha256"

    def ids(self, split: str) -> list[str]:
        check_split(split)
        numbers = range(21, 41) if split == "training" else range(1, 21)
        return [f"{n:02d}" for n in numbers]

    def files(self, id: str) -> ImageFiles:
        split = "training" if int(id) > 20 else "test"
        base = self.path / split
        return ImageFiles(
            id=id,
            image=base / "images" / f"{id}_{split}.tif",
            vessel=base / "1st_manual" / f"{id}_manual1.gif",
            fov=base / "mask" / f"{id}_{split}_mask.gif",
            second_observer=base / "2nd_manual" / f"{id}_manual2.gif" if split == "test" else None,
        )

    @classmethod
    def archive_path(cls, member: PurePosixPath) -> str | None:
        parts = member.parts
        if len(parts) >= 3 and FILE.match(member.name) and parts[-2] in FOLDERS and parts[-3] in ("training", "test"):
            return f"{parts[-3]}/{parts[-2]}/{member.name}"
        return None
