"""Image preprocessing applied to every image of a run (training, validation, test, predict) before
augmentation: `data.preprocess` in an experiment, e.g. `clahe`, `ace` or `{name: clahe, channel: lab}`.

Each method maps an HxWx3 uint8 RGB image to an HxWx3 uint8 image, so models and augmentation do not
change. ACE results are cached per image on disk (ACE costs about half a second per DRIVE image).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from retinalight.errors import ConfigError, close_matches
from retinalight.preprocess.ace import ace
from retinalight.preprocess.clahe import CHANNELS, clahe

METHODS: dict[str, Callable[..., np.ndarray]] = {"ace": ace, "clahe": clahe}
CACHED = {"ace"}  # worth a disk cache (CLAHE takes milliseconds, less than reading a PNG)

__all__ = ["CHANNELS", "METHODS", "ace", "clahe", "Preprocess", "build_preprocess"]


class Preprocess:
    """A configured method: `pre(image)` returns the processed image, from the disk cache when the same
    pixels were processed before with the same method and arguments (keyed by a hash of the image)."""

    def __init__(self, name: str, kwargs: dict, cache_dir: Path | None = None):
        self.name, self.kwargs, self.function = name, kwargs, METHODS[name]
        digest = hashlib.sha256(json.dumps([name, kwargs], sort_keys=True).encode()).hexdigest()[:8]
        self.cache = cache_dir / f"{name}-{digest}" if cache_dir and name in CACHED else None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from retinalight.data.io import read_rgb, write_rgb
        from retinalight.errors import DataFileError

        key = hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()[:20]
        path = self.cache / f"{key}.png" if self.cache else None
        if path and path.is_file():
            try:
                cached = read_rgb(path)
                if cached.shape == image.shape:
                    return cached
            except DataFileError:  # a damaged cache file is recomputed and replaced
                pass
        out = self.function(image, **self.kwargs)
        if path:
            with contextlib.suppress(OSError):  # a read-only cache only costs time
                write_rgb(path, out)
        return out

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())})"


def default_cache_dir() -> Path:
    """$RETINALIGHT_CACHE, else $XDG_CACHE_HOME/retinalight, else ~/.cache/retinalight."""
    base = os.environ.get("RETINALIGHT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "retinalight"
    return Path(base) / "preprocess"


def build_preprocess(spec: str | dict | None, cache_dir: Path | None | bool = True) -> Preprocess | None:
    """None / "none" -> None; "clahe" or {name: clahe, clip_limit: 2.0, ...} -> a checked `Preprocess`."""
    if spec is None or spec == "none":
        return None
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name", None)
    if name not in METHODS:
        raise ConfigError(
            f"data.preprocess: unknown method {name!r}{close_matches(str(name), METHODS)}; choose from none, {', '.join(METHODS)}"
        )
    accepted = list(inspect.signature(METHODS[name]).parameters)[1:]
    for key in spec:
        if key not in accepted:
            raise ConfigError(
                f"data.preprocess: {name} has no argument {key!r}{close_matches(key, accepted)}; it takes {', '.join(accepted)}"
            )
    if name == "clahe" and spec.get("channel", "green") not in CHANNELS:
        raise ConfigError(f"data.preprocess: clahe channel {spec['channel']!r}: choose from {', '.join(CHANNELS)}")
    for key in ("alpha", "clip_limit"):
        if key in spec and not (isinstance(spec[key], (int, float)) and spec[key] > 0):
            raise ConfigError(f"data.preprocess: {name} {key} must be a number > 0, got {spec[key]!r}")
    if "tile_grid" in spec and not (isinstance(spec["tile_grid"], int) and spec["tile_grid"] >= 1):
        raise ConfigError(f"data.preprocess: clahe tile_grid must be an integer >= 1, got {spec['tile_grid']!r}")
    return Preprocess(name, spec, default_cache_dir() if cache_dir is True else (cache_dir or None))
