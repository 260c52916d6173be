"""What every dataset reader shares: `Sample`, the files behind it, loading and checking, and the registry.

A dataset is one module in this package with one `@register_dataset` class: its name, folder, image size,
splits, where its FOV comes from, its checksums and how its published archives map onto its folder. Every
list of datasets (CLI choices, `data check | import | download`, the DataModules, the training-image
counts) is read from the registry, so adding a module adds the dataset everywhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np

from retinalight.data.fov import compute_fov
from retinalight.data.io import read_binary, read_rgb
from retinalight.errors import DataFileError, DatasetNotFoundError, UnknownNameError, close_matches

SPLITS = ("training", "test")


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
    """Base reader: subclasses declare the dataset; loading, checking and FOV handling live here.

    Subclasses set the class attributes below and define `ids(split)`, `files(id)` and `archive_path(member)`.
    """

    name = ""  # registry key: data.dataset in experiment files, --dataset on the command line
    title = ""  # how papers write it
    folder = ""  # under the data root
    size: tuple[int, int] = (0, 0)  # (height, width) of every published image
    fov_masks = True  # False: no masks are published; the FOV is computed from the image (`compute_fov`)
    source = ""  # where a user gets the files
    downloads: tuple[str, ...] = ()  # archives served without registration (`data download`)
    split_reference = ""  # who defined the training/test split
    checksums: str | None = None  # a file of `sha256  path-in-folder` lines beside the module; None: not verified here
    generated = False  # True: made by code, no files (the synthetic set)
    published_counts: dict[str, int] | None = None  # {split: images} where `ids` lists the files present instead

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.path = self.root / self.folder

    def ids(self, split: str) -> list[str]:
        raise NotImplementedError

    def files(self, id: str) -> ImageFiles:
        raise NotImplementedError

    @classmethod
    def archive_path(cls, member: PurePosixPath) -> str | None:
        """Where a member of a published archive goes, relative to the dataset folder (None: not ours).
        A `.gz` member mapped to a name without `.gz` is decompressed on import (STARE ships gzipped images)."""
        return None

    @classmethod
    def published_checksums(cls) -> dict[str, str]:
        """{path relative to the dataset folder: sha256} of the published files ({} when not declared)."""
        if not cls.checksums:
            return {}
        text = resources.files(__package__).joinpath(cls.checksums).read_text()
        return {line.split()[1]: line.split()[0] for line in text.splitlines() if line.strip()}

    def require(self) -> None:
        """Raise DatasetNotFoundError with where to get the data when the dataset folder is missing."""
        if not self.path.is_dir():
            how = f"`python -m retinalight.data download {self.name}`, or " if self.downloads else ""
            raise DatasetNotFoundError(
                f"{self.title or self.name} not found at {self.path}: get it from {self.source} ({how}"
                f"`python -m retinalight.data import ARCHIVE --data-root {self.root}`), "
                "or set --data-root / RETINALIGHT_DATA to the folder that holds it"
            )

    def missing_parts(self, splits: tuple[str, ...] = SPLITS) -> dict[tuple[str, str], list[Path]]:
        """{(split, "images" | "expert maps" | "FOV masks"): the files of that part that are not there}."""
        missing: dict[tuple[str, str], list[Path]] = {}
        for split in splits:
            for id in self.ids(split):
                files = self.files(id)
                for part, path in (("images", files.image), ("expert maps", files.vessel), ("FOV masks", files.fov)):
                    if path is not None and not path.is_file():
                        missing.setdefault((split, part), []).append(path)
        return missing

    def require_files(self, splits: tuple[str, ...] = SPLITS) -> None:
        """Every file of `splits` present and decodable, before a run's first step: a run must not train for
        hours and then stop at its first missing test map. One line names what is missing or unreadable."""
        self.require()
        if self.generated:  # made by code: no files to miss
            return
        missing = self.missing_parts(splits)
        if missing:
            parts = "; ".join(f"{len(paths)} {split} {part} (e.g. {paths[0]})" for (split, part), paths in missing.items())
            raise DataFileError(f"{self.title or self.name} at {self.path} lacks {parts}: the run needs every one; nothing was trained")
        for split in splits:
            for id in self.ids(split):
                self.load(id)  # decoded and cached: a corrupt file is one line naming it

    def load(self, id: str) -> Sample:
        """Decode one image (cached per process) and check that image and maps agree in size."""
        self.require()
        files = self.files(id)
        image = read_rgb(files.image)
        vessel = self.read_vessel(files.vessel)
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

    @staticmethod
    def group(id: str) -> str | None:
        """The image's diagnosis group where the dataset has them (HRF, FIVES): summaries break scores down by it."""
        return None

    def read_vessel(self, path: Path) -> np.ndarray:
        """The expert map as HxW bool (a reader whose labels are stored otherwise overrides this)."""
        return read_binary(path)

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


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise UnknownNameError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}{close_matches(split, SPLITS)}")


DATASETS: dict[str, type[RetinaDataset]] = {}


def register_dataset(cls: type[RetinaDataset]) -> type[RetinaDataset]:
    """Class decorator: make a reader known by its `name` to every command and to experiment files."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a registered dataset needs a name")
    if cls.name in DATASETS and DATASETS[cls.name] is not cls:
        raise ValueError(f"dataset {cls.name!r} registered twice ({DATASETS[cls.name].__name__}, {cls.__name__})")
    DATASETS[cls.name] = cls
    return cls
