"""Running a trained network on whole fundus images: pad, predict, crop back; safe checkpoint loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from retinalight.data.datamodules import image_to_tensor
from retinalight.data.geometry import pad, padded_size
from retinalight.errors import DataFileError
from retinalight.metrics.segmentation import Prediction


@torch.no_grad()
def predict_probability(model: nn.Module, image: np.ndarray, fov: np.ndarray, multiple: int = 16) -> np.ndarray:
    """Vessel probability (HxW float32) of one HxWx3 uint8 image at its original size."""
    model.eval()
    device = next(model.parameters()).device
    size = padded_size(*image.shape[:2], multiple)
    padded, region = pad(image, size)
    x = image_to_tensor(padded)[None].to(device)
    mask = torch.from_numpy(pad(fov, size)[0]).float()[None, None].to(device)
    prob = torch.sigmoid(model(x, mask).float())[0, 0]
    return region.crop(prob).cpu().numpy()


def predict_samples(model: nn.Module, samples, multiple: int = 16, preprocess=None) -> list[Prediction]:
    """Predictions for dataset samples, quantised to 8 bits (round(probability x 255) / 255): the form a run
    saves in predictions/, so a run's metrics, `evaluate --ckpt` and `evaluate --pred-dir` agree exactly.
    `preprocess` (a checkpoint's, see `load_checkpoint`) is applied to each image first."""
    out = []
    for s in samples:
        image = preprocess(s.image) if preprocess else s.image
        out.append(Prediction(s.id, (predict_probability(model, image, s.fov, multiple) * 255).round() / 255, s.vessel, s.fov))
    return out


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network of a retinalight checkpoint. Uses `weights_only=True`: no pickled code runs.
    Returns (model, hyper-parameters); `checkpoint_preprocess(hparams)` is the preprocessing it was trained with."""
    from retinalight.models import create_model

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        hparams = ckpt["hyper_parameters"]
        model = create_model(hparams["model"]["name"], **hparams["model"].get("kwargs", {}))
        state = {k.removeprefix("model.").replace("_orig_mod.", ""): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataFileError(f"{path}: not a readable retinalight checkpoint ({message})") from None
    return model.to(device).eval(), hparams


def checkpoint_preprocess(hparams: dict):
    """The preprocessing a checkpoint's run applied to its images (None for none)."""
    from retinalight.preprocess import build_preprocess

    return build_preprocess(hparams.get("preprocess"))
