"""Dataset readers, one module each, found by the registry (`base.register_dataset`).

Every module of this package is imported here, so a new reader file is all a new dataset takes.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from retinalight.data.datasets.base import (
    DATASETS,
    SPLITS,
    ImageFiles,
    RetinaDataset,
    Sample,
    check_split,
    register_dataset,
)
from retinalight.errors import UnknownNameError, close_matches

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

Drive, ChaseDB1 = DATASETS["drive"], DATASETS["chase_db1"]


def dataset_names(files_only: bool = False) -> list[str]:
    """Registered dataset names; `files_only` leaves out generated ones (what `data check` can verify)."""
    return [name for name, cls in DATASETS.items() if not (files_only and cls.generated)]


def get_dataset(name: str, root: str | Path, **kwargs) -> RetinaDataset:
    """A reader by registered name (kwargs go to readers that take them: synthetic's count, size, seed)."""
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}{close_matches(name, DATASETS)}")
    return DATASETS[name](root, **kwargs)


__all__ = [
    "DATASETS",
    "SPLITS",
    "ChaseDB1",
    "Drive",
    "ImageFiles",
    "RetinaDataset",
    "Sample",
    "check_split",
    "dataset_names",
    "get_dataset",
    "register_dataset",
]
