"""Getting the data the way publishers distribute it: import their zip archives, or download CHASE_DB1.

Archive members are mapped by their published file names onto the data root's layout; everything else in
an archive is skipped. A member with an absolute path, a '..' component or a symbolic link is refused.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from retinalight.errors import DataFileError, UnknownNameError, close_matches

DRIVE_FILE = re.compile(r"^(\d\d)_(training|test)(_mask)?\.(tif|gif)$|^(\d\d)_manual[12]\.gif$")
CHASE_FILE = re.compile(r"^Image_\d\d[LR](\.jpg|_1stHO\.png|_2ndHO\.png)$")
DRIVE_FOLDERS = {"images", "1st_manual", "2nd_manual", "mask"}

# What a publisher serves without registration. DRIVE needs a grand-challenge.org account: import its zips.
DOWNLOADS = {"chase_db1": "https://staffnet.kingston.ac.uk/~ku15565/CHASE_DB1/assets/CHASEDB1.zip"}


def destination(member: str) -> str | None:
    """Where an archive member belongs under the data root (posix path), or None to skip it."""
    parts = PurePosixPath(member).parts
    name = parts[-1] if parts else ""
    if CHASE_FILE.match(name):
        return f"CHASE_DB1/{name}"
    if DRIVE_FILE.match(name) and len(parts) >= 3 and parts[-2] in DRIVE_FOLDERS and parts[-3] in ("training", "test"):
        return f"DRIVE/{parts[-3]}/{parts[-2]}/{name}"
    return None


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or name.startswith("\\"):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' in path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def import_archive(archive: str | Path, root: str | Path) -> list[Path]:
    """Unpack a DRIVE or CHASE_DB1 zip into `root`; returns the files written."""
    archive, root = Path(archive), Path(root)
    if not archive.is_file():
        raise DataFileError(f"{archive}: archive not found")
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise DataFileError(f"{archive}: not a zip archive (or corrupt)") from None
    with zf:
        members = [info for info in zf.infolist() if not info.is_dir()]
        for info in members:  # every member is checked before any is written
            reason = unsafe_reason(info)
            if reason:
                raise DataFileError(f"{archive}: refused member {info.filename!r} ({reason}); nothing was written")
        written = []
        for info in members:
            target = destination(info.filename)
            if target is None:
                continue
            path = root / target
            path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
            written.append(path)
    if not written:
        raise DataFileError(f"{archive}: no DRIVE or CHASE_DB1 files found in it")
    return written


def download(dataset: str, root: str | Path, url: str | None = None) -> list[Path]:
    """Download a dataset's archive (progress bar), import it, and verify every file's SHA-256."""
    from retinalight.data.check import published_checksums, sha256

    if dataset not in DOWNLOADS and url is None:
        raise UnknownNameError(
            f"no public download for {dataset!r}{close_matches(dataset, DOWNLOADS)}: "
            f"downloadable: {', '.join(DOWNLOADS)}; DRIVE needs registration, then `python -m retinalight.data import`"
        )
    url = url or DOWNLOADS[dataset]
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "archive.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                digest = hashlib.sha256()
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dataset}", disable=None) as bar:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except OSError as err:
            raise DataFileError(f"{url}: download failed ({err})") from None
        written = import_archive(target, root)
    sums = published_checksums()
    for path in written:
        key = path.relative_to(root).as_posix()
        if key in sums and sha256(path) != sums[key]:
            raise DataFileError(f"{path}: SHA-256 differs from the published file (download corrupted?)")
    return written
