"""Augmentation with albumentations 2.0.8, kept behind this one module (the library is unmaintained).

Transforms are built with `strict=True`: in albumentations 2.x an unknown argument is otherwise only a
warning and the transform silently falls back to its defaults, so a typo in a config would go unnoticed.
"""

from __future__ import annotations

import math
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


def official_augmentation() -> A.BaseCompose:
    """The official SA-UNet recipe (`keras_dataAug.py`), drawn online: it writes 3 copies per image of each of
    three operations, so a sample is one of them or, 1 time in 10, the original image:
    - rotation by a random whole angle in [1, 359] degrees (bicubic image, nearest label, black corners);
    - colour: saturation x U{0, 0.1, .., 3}, brightness x U{1, .., 2}, contrast x U{1, .., 2}, sharpness
      x U{0, .., 3} (PIL ImageEnhance; here ColorJitter plus albumentations' Sharpen for factors above 1,
      a blur for factors below);
    - "Gaussian noise" of mean 0.2 and std 0.3 grey levels, which the uint8 cast nearly erases (kept as such).
    No flips: the paper's text lists flips, the code does not apply them."""
    colour = A.Compose(
        [
            A.ColorJitter(brightness=(1.0, 2.0), contrast=(1.0, 2.0), saturation=(0.0, 3.0), hue=(0.0, 0.0), p=1.0),
            A.OneOf([A.Sharpen(alpha=(0.0, 0.5), lightness=(1.0, 1.0)), A.Blur(blur_limit=(3, 3))], p=1.0),
        ]
    )
    noise = A.GaussNoise(std_range=(0.3 / 255, 0.3 / 255), mean_range=(0.2 / 255, 0.2 / 255), p=1.0)
    rotate = A.Rotate(limit=(1, 359), interpolation=cv2.INTER_CUBIC, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=1.0)
    return A.OneOf([rotate, colour, noise], p=0.9)


AUGMENT_PRESETS = {"official": official_augmentation}


def build_augmentation(
    spec: dict[str, dict[str, Any]] | str,
    padded: tuple[int, int],
    crop: int | None = None,
) -> A.Compose:
    """Augment, then zero-pad to `padded` (height, width), or with `crop` centre-crop `crop` x `crop`.

    With `crop`, the caller passes a window around the crop's centre that is large enough for any rotation
    (`crop_window`), so rotating costs a window, not a whole image, and no rotated corner reaches the crop.
    `spec` maps a short name above to its keyword arguments (`p` is the probability); a value of None
    or p=0 disables it. Or it names a preset (`AUGMENT_PRESETS`: "official", the SA-UNet code's recipe).
    Image, vessel and FOV masks stay aligned: call with `masks=[vessel, fov]`.
    """
    transforms = []
    if isinstance(spec, str):
        if spec not in AUGMENT_PRESETS:
            raise ConfigError(
                f"unknown augmentation preset {spec!r}{close_matches(spec, AUGMENT_PRESETS)}; presets: {', '.join(AUGMENT_PRESETS)}"
            )
        transforms.append(AUGMENT_PRESETS[spec]())
        spec = {}
    for name, params in spec.items():
        if name not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {name!r}{close_matches(name, AUGMENTATIONS)}; known: {', '.join(AUGMENTATIONS)}")
        if not params or params.get("p", 0.5) <= 0:
            continue
        cls, defaults = AUGMENTATIONS[name]
        transforms.append(_make(cls, {**defaults, **params}, name))
    if crop:
        transforms.append(A.CenterCrop(crop, crop))
    else:
        transforms.append(A.PadIfNeeded(padded[0], padded[1], position="center", border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0))
    try:
        return A.Compose(transforms, strict=True)
    except ValueError as err:
        raise ConfigError(f"augmentation: {err}") from None


def crop_window(crop: int) -> int:
    """Side of the window cut around a crop's centre before augmenting: a `crop` square rotated by any
    angle stays inside it."""
    return math.ceil(crop * math.sqrt(2)) + 2


def _make(cls: type, params: dict[str, Any], name: str):
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}  # YAML lists -> the tuples albumentations expects
    try:  # an unknown argument is a UserWarning in albumentations 2.x: make it an error
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            return cls(**params)
    except (TypeError, ValueError, UserWarning) as err:
        raise ConfigError(f"augmentation {name!r}: {err}") from None
