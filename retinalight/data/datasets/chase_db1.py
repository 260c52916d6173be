"""CHASE_DB1 (Owen et al. 2011; Fraz et al. 2012): 28 images of 999x960 from 14 children, no FOV masks."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from retinalight.data.datasets.base import ImageFiles, RetinaDataset, check_split, register_dataset

FILE = re.compile(r"^Image_\d\d[LR](\.jpg|_1stHO\.png|_2ndHO\.png)$")


@register_dataset
class ChaseDB1(RetinaDataset):
    """01L-10R training, 11L-14R test (SA-UNet's split); the FOV is computed from the image."""

    name = "chase_db1"
    title = "CHASE_DB1"
    folder = "CHASE_DB1"
    size = (960, 999)
    fov_masks = False
    source = "https://blogs.kingston.ac.uk/retinal/chasedb1/"
    downloads = ("https://staffnet.kingston.ac.uk/~ku15565/CHASE_DB1/assets/CHASEDB1.zip",)
    split_reference = "SA-UNet's (Guo et al. 2020): the first 20 images train, the last 8 test"
    checksums = "chase_db1.sha256"

    def ids(self, split: str) -> list[str]:
        check_split(split)
        children = range(1, 11) if split == "training" else range(11, 15)
        return [f"Image_{n:02d}{eye}" for n in children for eye in "LR"]

    def files(self, id: str) -> ImageFiles:
        return ImageFiles(
            id=id,
            image=self.path / f"{id}.jpg",
            vessel=self.path / f"{id}_1stHO.png",
            fov=None,
            second_observer=self.path / f"{id}_2ndHO.png",
        )

    @classmethod
    def archive_path(cls, member: PurePosixPath) -> str | None:
        return member.name if FILE.match(member.name) else None
