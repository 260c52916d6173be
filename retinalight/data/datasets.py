"""Readers for DRIVE and CHASE_DB1 in their published layouts: ids, splits and one `Sample` per image."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retinalight.data.fov import compute_fov
from retinalight.data.io import read_binary, read_rgb
from retinalight.errors import DataFileError, DatasetNotFoundError, UnknownNameError, close_matches

SPLITS = ("training", "test")
VAL_MODES = ("holdout", "augmented", "test")  # where validation images come from (retinalight.data.datamodules)


@dataclass(frozen=True)
class Sample:
    """One fundus image at original resolution with its vessel annotation and FOV mask."""

    id: str
    image: np.ndarray  # HxWx3 uint8
    vessel: np.ndarray  # HxW bool
    fov: np.ndarray  # HxW bool


@dataclass(frozen=True)
class ImageFiles:
    """The files behind one sample; `fov` is None where the dataset ships no FOV masks."""

    id: str
    image: Path
    vessel: Path
    fov: Path | None
    second_observer: Path | None = None


class RetinaDataset:
    """Base reader: subclasses say where files are; loading, checking and FOV handling live here."""

    name = ""
    folder = ""
    size: tuple[int, int] = (0, 0)  # (height, width) of every published image
    source = ""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.path = self.root / self.folder

    def ids(self, split: str) -> list[str]:
        raise NotImplementedError

    def files(self, id: str) -> ImageFiles:
        raise NotImplementedError

    def require(self) -> None:
        """Raise DatasetNotFoundError with where to get the data when the dataset folder is missing."""
        if not self.path.is_dir():
            raise DatasetNotFoundError(
                f"{self.name} not found at {self.path}: get it from {self.source}, then run "
                f"`python -m retinalight.data import ARCHIVE.zip --data-root {self.root}` "
                "(or set --data-root / RETINALIGHT_DATA to the folder that holds it)"
            )

    def load(self, id: str) -> Sample:
        """Decode one image (cached per process) and check that image and maps agree in size."""
        self.require()
        files = self.files(id)
        image = read_rgb(files.image)
        vessel = read_binary(files.vessel)
        fov = read_binary(files.fov) if files.fov else computed_fov(files.image)
        for what, array in (("annotation", vessel), ("FOV mask", fov)):
            if array.shape != image.shape[:2]:
                raise DataFileError(
                    f"{files.vessel if what == 'annotation' else files.fov}: {what} is "
                    f"{array.shape[1]}x{array.shape[0]}, image is {image.shape[1]}x{image.shape[0]}"
                )
        return Sample(id, image, vessel, fov)

    def load_split(self, split: str) -> list[Sample]:
        return [self.load(i) for i in self.ids(split)]

    def second_observer(self, id: str) -> np.ndarray | None:
        """The second human observer's annotation where the user's copy has it (optional)."""
        path = self.files(id).second_observer
        return read_binary(path) if path and path.is_file() else None


@functools.lru_cache(maxsize=512)
def computed_fov(image_path: Path) -> np.ndarray:
    """FOV mask computed from an image file, once per process (read-only)."""
    fov = compute_fov(read_rgb(image_path))
    fov.setflags(write=False)
    return fov


class Drive(RetinaDataset):
    """DRIVE (Staal et al. 2004): training 21-40, test 01-20, official FOV masks."""

    name = "drive"
    folder = "DRIVE"
    size = (584, 565)
    source = "https://drive.grand-challenge.org (registration required)"

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


class ChaseDB1(RetinaDataset):
    """CHASE_DB1 (Owen et al. 2011; Fraz et al. 2012): 01L-10R training, 11L-14R test (SA-UNet's split).

    No FOV masks are published, so they are computed from the image (`compute_fov`)."""

    name = "chase_db1"
    folder = "CHASE_DB1"
    size = (960, 999)
    source = "https://blogs.kingston.ac.uk/retinal/chasedb1/ (or `python -m retinalight.data download chase_db1`)"

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


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise UnknownNameError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}{close_matches(split, SPLITS)}")


def get_dataset(name: str, root: str | Path, **kwargs) -> RetinaDataset:
    """A reader by name: drive, chase_db1 or synthetic (kwargs go to the synthetic generator)."""
    from retinalight.data.synthetic import SyntheticVessels

    readers = {"drive": Drive, "chase_db1": ChaseDB1, "synthetic": SyntheticVessels}
    if name not in readers:
        raise UnknownNameError(f"unknown dataset {name!r}; choose from {', '.join(readers)}{close_matches(name, readers)}")
    return readers[name](root, **kwargs)
