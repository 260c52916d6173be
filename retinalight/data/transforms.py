"""Augmentation with albumentations 2.0.8, kept behind this one module (the library is unmaintained).

Transforms are built with `strict=True`: in albumentations 2.x an unknown argument is otherwise only a
warning and the transform silently falls back to its defaults, so a typo in a config would go unnoticed.
"""

from __future__ import annotations

import warnings
from typing import Any

import albumentations as A
import cv2

from retinalight.errors import ConfigError, close_matches

# Short names used in experiment files -> albumentations class and the defaults that match SA-UNet's
# augmentation (random rotation, Gaussian noise, colour jitter, horizontal/vertical/diagonal flips).
AUGMENTATIONS: dict[str, tuple[type, dict[str, Any]]] = {
    "rotate": (A.Rotate, {"limit": 180, "border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": 0}),
    "gauss_noise": (A.GaussNoise, {"std_range": (0.01, 0.05)}),
    "color_jitter": (A.ColorJitter, {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02}),
    "hflip": (A.HorizontalFlip, {}),
    "vflip": (A.VerticalFlip, {}),
    "transpose": (A.Transpose, {}),  # the diagonal flip
}


def build_augmentation(
    spec: dict[str, dict[str, Any]],
    padded: tuple[int, int],
    crop: int | None = None,
) -> A.Compose:
    """Augment, zero-pad to `padded` (height, width), then optionally random-crop `crop` x `crop`.

    `spec` maps a short name above to its keyword arguments (`p` is the probability); a value of None
    or p=0 disables it. Image, vessel and FOV masks stay aligned: call with `masks=[vessel, fov]`.
    """
    transforms = []
    for name, params in spec.items():
        if name not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {name!r}{close_matches(name, AUGMENTATIONS)}; known: {', '.join(AUGMENTATIONS)}")
        if not params or params.get("p", 0.5) <= 0:
            continue
        cls, defaults = AUGMENTATIONS[name]
        transforms.append(_make(cls, {**defaults, **params}, name))
    transforms.append(A.PadIfNeeded(padded[0], padded[1], position="center", border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0))
    if crop:
        transforms.append(A.RandomCrop(crop, crop))
    try:
        return A.Compose(transforms, strict=True)
    except ValueError as err:
        raise ConfigError(f"augmentation: {err}") from None


def _make(cls: type, params: dict[str, Any], name: str):
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}  # YAML lists -> the tuples albumentations expects
    try:  # an unknown argument is a UserWarning in albumentations 2.x: make it an error
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            return cls(**params)
    except (TypeError, ValueError, UserWarning) as err:
        raise ConfigError(f"augmentation {name!r}: {err}") from None
