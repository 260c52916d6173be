"""STARE (Hoover et al. 2000): the 20 images of 700x605 with vessel labels, no FOV masks.

No official split exists. This reader uses the one of Maninis et al. (DRIU, MICCAI 2016), also used by
bob.ip.binseg: the first 10 labelled images train, the last 10 test. Leave-one-out and 4-fold
cross-validation are the other splits in the literature; scores from them are not comparable with these.
Adam Hoover's labels (`ah`) are the reference; Valentina Kouznetsova's (`vk`) are the second observer.
Published as three tar archives of gzipped PPM files, decompressed on import.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from retinalight.data.datasets.base import ImageFiles, RetinaDataset, check_split, register_dataset

LABELLED = (1, 2, 3, 4, 5, 44, 77, 81, 82, 139, 162, 163, 235, 236, 239, 240, 255, 291, 319, 324)
FILE = re.compile(r"^im(\d{4})(\.ah|\.vk)?\.ppm(\.gz)?$")
FOLDERS = {"": "images", ".ah": "labels-ah", ".vk": "labels-vk"}


@register_dataset
class Stare(RetinaDataset):
    name = "stare"
    title = "STARE"
    folder = "STARE"
    size = (605, 700)
    fov_masks = False
    source = "https://cecas.clemson.edu/~ahoover/stare/probing/index.html"
    downloads = tuple(
        f"https://cecas.clemson.edu/~ahoover/stare/probing/{name}" for name in ("stare-images.tar", "labels-ah.tar", "labels-vk.tar")
    )
    split_reference = "Maninis et al. 2016 (DRIU): the first 10 labelled images train, the last 10 test"

    def ids(self, split: str) -> list[str]:
        check_split(split)
        numbers = LABELLED[:10] if split == "training" else LABELLED[10:]
        return [f"im{n:04d}" for n in numbers]

    def files(self, id: str) -> ImageFiles:
        return ImageFiles(
            id=id,
            image=self.path / "images" / f"{id}.ppm",
            vessel=self.path / "labels-ah" / f"{id}.ah.ppm",
            fov=None,
            second_observer=self.path / "labels-vk" / f"{id}.vk.ppm",
        )

    @classmethod
    def archive_path(cls, member: PurePosixPath) -> str | None:
        match = FILE.match(member.name)
        if not match or int(match.group(1)) not in LABELLED:
            return None
        return f"{FOLDERS[match.group(2) or '']}/{member.name.removesuffix('.gz')}"
