"""Getting the data the way publishers distribute it: import their zip or tar archives, or download them.

Archive members are mapped by their published file names onto the data root's layout, by the dataset
readers themselves (`RetinaDataset.archive_path`); everything else in an archive is skipped. A member with
an absolute path, a '..' component or a link is refused before anything is written.
"""

from __future__ import annotations

import gzip
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm.auto import tqdm

from retinalight.data.datasets import DATASETS, get_dataset
from retinalight.errors import DataFileError, UnknownNameError, close_matches


def destination(member: str) -> str | None:
    """Where an archive member belongs under the data root (posix path), or None to skip it."""
    path = PurePosixPath(member.replace("\\", "/"))
    for cls in DATASETS.values():
        target = cls.archive_path(path)
        if target is not None:
            return f"{cls.folder}/{target}"
    return None


def unsafe_reason(name: str, is_link: bool) -> str | None:
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or name.startswith("\\"):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' in path"
    if is_link:
        return "symbolic or hard link"
    return None


@contextmanager
def archive_members(archive: Path) -> Iterator[list[tuple[str, bool, object]]]:
    """(name, is_link, handle) of every file in a zip or tar archive; `open_member(archive, handle)` reads one."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield [(i.filename, stat.S_ISLNK(i.external_attr >> 16), (zf, i)) for i in zf.infolist() if not i.is_dir()]
        return
    if not tarfile.is_tarfile(archive):
        raise DataFileError(f"{archive}: not a zip or tar archive (or corrupt)")
    try:
        with tarfile.open(archive) as tf:
            yield [(m.name, m.issym() or m.islnk(), (tf, m)) for m in tf.getmembers() if not m.isdir()]
    except tarfile.TarError as err:
        raise DataFileError(f"{archive}: corrupt tar archive ({err})") from None


def open_member(handle) -> IO[bytes]:
    archive, member = handle
    return archive.open(member) if isinstance(archive, zipfile.ZipFile) else archive.extractfile(member)


def nothing_known(source: Path) -> DataFileError:
    """The error for an archive or folder holding no file of any registered dataset."""
    titles = ", ".join(c.title for c in DATASETS.values() if not c.generated)
    return DataFileError(f"{source}: no files of {titles} in it (an unknown layout)")


def import_folder(folder: Path, root: Path) -> list[Path]:
    """Copy an extracted archive's files (found by their published names, as archive members) into `root`."""
    written = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        target = destination(path.relative_to(folder).as_posix())
        if target is not None:
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, root / target)
            written.append(root / target)
    if not written:
        raise nothing_known(folder)
    return written


def import_archive(archive: str | Path, root: str | Path) -> list[Path]:
    """Unpack a publisher's archive (zip or tar, for any registered dataset), or copy an extracted one (a
    folder), into `root`; returns the files written. A .rar (FIVES) is refused in one line saying how to extract it."""
    archive, root = Path(archive), Path(root)
    if archive.is_dir():
        return import_folder(archive, root)
    if not archive.is_file():
        raise DataFileError(f"{archive}: archive not found")
    if archive.suffix.lower() == ".rar":
        raise DataFileError(
            f"{archive}: a .rar archive (FIVES is published so), which Python's standard library cannot read: extract it "
            "(`unar`, `unrar x` or `bsdtar -xf`), then import the extracted folder"
        )
    with archive_members(archive) as members:
        for name, is_link, _ in members:  # every member is checked before any is written
            reason = unsafe_reason(name, is_link)
            if reason:
                raise DataFileError(f"{archive}: refused member {name!r} ({reason}); nothing was written")
        written = []
        for name, _, handle in members:
            target = destination(name)
            if target is None:
                continue
            path = root / target
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open_member(handle) as raw, open(path, "wb") as dst:
                    shutil.copyfileobj(gzip.GzipFile(fileobj=raw) if name.endswith(".gz") and not target.endswith(".gz") else raw, dst)
            except (OSError, EOFError, zipfile.BadZipFile) as err:
                path.unlink(missing_ok=True)
                raise DataFileError(f"{archive}: member {name!r} is corrupt ({err})") from None
            written.append(path)
    if not written:
        raise nothing_known(archive)
    return written


def downloadable() -> list[str]:
    return [name for name, cls in DATASETS.items() if cls.downloads]


def download(dataset: str, root: str | Path, urls: list[str] | None = None) -> list[Path]:
    """Download a dataset's archives (progress bar), import them, and verify every file's SHA-256 where the
    reader declares checksums. `urls` replace the reader's addresses one for one (mirrors, or file:// copies)."""
    from retinalight.data.check import sha256

    cls = DATASETS.get(dataset)
    if cls is None or not cls.downloads:
        registration = [c.title for c in DATASETS.values() if not c.downloads and not c.generated]
        raise UnknownNameError(
            f"no public download for {dataset!r}{close_matches(dataset, downloadable())}: downloadable: {', '.join(downloadable())}; "
            f"{', '.join(registration)} need registration, then `python -m retinalight.data import`"
        )
    if urls and len(urls) != len(cls.downloads):
        raise UnknownNameError(f"{dataset} is {len(cls.downloads)} archive(s) ({', '.join(cls.downloads)}): give as many --url")
    reader, written = get_dataset(dataset, root), []
    with tempfile.TemporaryDirectory() as tmp:
        for k, address in enumerate(urls or cls.downloads):
            target = Path(tmp) / f"archive{k}{''.join(PurePosixPath(address).suffixes[-2:])}"
            fetch_url(address, target, f"download {dataset} ({k + 1}/{len(cls.downloads)})")
            written += import_archive(target, root)
    sums = reader.published_checksums()
    for path in written:
        key = path.relative_to(reader.path).as_posix()
        if key in sums and sha256(path) != sums[key]:
            raise DataFileError(f"{path}: SHA-256 differs from the published file (download corrupted?)")
    return written


def fetch_url(url: str, target: Path, label: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=None) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as err:
        raise DataFileError(f"{url}: download failed ({err})") from None
