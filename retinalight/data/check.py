"""Verify a data root: layout, file counts, decodability, sizes, binary annotations and published SHA-256,
for every registered dataset (`retinalight.data.datasets`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from retinalight.data.datasets import SPLITS, RetinaDataset, dataset_names, get_dataset
from retinalight.data.io import read_binary, read_rgb
from retinalight.errors import DataFileError


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class DatasetReport:
    name: str
    path: Path
    images: int = 0
    expected: int = 0
    problems: list[str] = field(default_factory=list)
    checksums: bool = False  # the files were compared with published SHA-256 sums

    @property
    def ok(self) -> bool:
        return not self.problems and self.images == self.expected


def check_dataset(reader: RetinaDataset, verify_checksums: bool = True) -> DatasetReport:
    """One problem line per bad file: missing, corrupt, wrong size, not binary, checksum differs."""
    ids = [i for split in SPLITS for i in reader.ids(split)]
    report = DatasetReport(reader.name, reader.path, expected=len(ids))
    sums = reader.published_checksums() if verify_checksums else {}
    report.checksums = bool(sums)
    if not reader.path.is_dir():
        report.problems.append(f"{reader.path}: folder missing (get {reader.name} from {reader.source})")
        return report
    height, width = reader.size
    for id in tqdm(ids, desc=f"check {reader.name}", unit="image", disable=None, leave=False):
        files = reader.files(id)
        problem = None
        try:
            image = read_rgb(files.image)
            if image.shape[:2] != (height, width):
                problem = f"{files.image}: {image.shape[1]}x{image.shape[0]}, expected {width}x{height}"
            for path, read in ((files.vessel, reader.read_vessel), (files.fov, read_binary)):
                if path is None or problem:
                    continue
                if read(path).shape != (height, width):
                    problem = f"{path}: size differs from its image ({width}x{height})"
            for path in (files.image, files.vessel, files.fov):
                key = path.relative_to(reader.path).as_posix() if path else None
                if not problem and key in sums and sha256(path) != sums[key]:
                    problem = f"{path}: SHA-256 differs from the published file (modified or re-encoded?)"
        except DataFileError as err:
            problem = str(err)
        if problem:
            report.problems.append(problem)
        else:
            report.images += 1
    return report


def present_datasets(root: Path) -> list[str]:
    """The registered datasets with a folder under `root` (what `data check` verifies by default)."""
    return [name for name in dataset_names(files_only=True) if get_dataset(name, root).path.is_dir()]


def check_root(root: Path, datasets: list[str] | None = None, verify_checksums: bool = True) -> list[DatasetReport]:
    """Reports for `datasets`, else for every dataset present under `root` (none present: all of them, each
    saying where to get it)."""
    names = datasets or present_datasets(root) or dataset_names(files_only=True)
    return [check_dataset(get_dataset(name, root), verify_checksums) for name in names]


def format_reports(reports: list[DatasetReport]) -> str:
    lines = [f"{'dataset':<10} {'images OK':>10}  status  checksums  folder"]
    for r in reports:
        sums = "published" if r.checksums else "none"
        lines.append(f"{r.name:<10} {f'{r.images}/{r.expected}':>10}  {'OK' if r.ok else 'FAIL':<6}  {sums:<9}  {r.path}")
    problems = [p for r in reports for p in r.problems]
    return "\n".join(lines + [f"problem: {p}" for p in problems])
