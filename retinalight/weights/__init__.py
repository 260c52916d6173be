"""Pretrained networks shipped with the package, usable with no training and no checkpoint of your own.

  retinalight predict --model sa_unet-drive --input photo.jpg --out maps/
  retinalight evaluate --model sa_unet-chase_db1 --dataset chase_db1
  python -m retinalight.weights list
  python -m retinalight.weights build sa_unet-drive --runs runs   # train (or reuse) its recipe's run, then export it

Each file is a slim checkpoint: the network's weights and how its run prepared images (what
`retinalight.inference.load_checkpoint` reads), without optimizer state. `weights.json` lists every one with
its recipe (experiment, profile, arm, seed), SHA-256, test scores and the provenance of the run that made it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from retinalight.data.check import sha256
from retinalight.errors import DataFileError, UnknownNameError, close_matches

MANIFEST = "weights.json"


def folder() -> Path:
    return Path(str(resources.files(__name__)))


def manifest() -> dict[str, dict]:
    """{name: entry} of the shipped weights (`weights.json`)."""
    return json.loads((folder() / MANIFEST).read_text())


def weights_path(name: str) -> Path:
    """The file of shipped weights `name`, after checking its SHA-256 against the manifest."""
    entries = manifest()
    if name not in entries:
        raise UnknownNameError(f"unknown model {name!r}{close_matches(name, entries)}; shipped: {', '.join(entries)}")
    entry = entries[name]
    path = folder() / entry.get("file", f"{name}.pt")
    if not path.is_file():
        raise DataFileError(f"{path}: the weights of {name} are missing; rebuild them: python -m retinalight.weights build {name}")
    if sha256(path) != entry.get("sha256"):
        raise DataFileError(
            f"{path}: SHA-256 differs from weights.json (modified or truncated); rebuild: python -m retinalight.weights build {name}"
        )
    return path
