"""segmentation-models-pytorch baselines, registered as `smp_<arch>_<encoder>` (e.g. smp_unet_resnet34)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retinalight.errors import ConfigError
from retinalight.models.registry import register_prefix

# Listed by `list_models()`; any other `smp_<arch>_<encoder>` smp knows also works.
LISTED = ("smp_unet_resnet34", "smp_unetplusplus_resnet34", "smp_fpn_resnet34", "smp_deeplabv3plus_resnet34")


class SmpModel(nn.Module):
    """An smp model that accepts any input size: pads to its encoder's stride (32) and crops back."""

    def __init__(self, arch: str, encoder: str, in_channels: int = 3, encoder_weights: str | None = None):
        super().__init__()
        import segmentation_models_pytorch as smp

        try:
            self.net = smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights, in_channels=in_channels, classes=1)
        except (KeyError, ValueError) as err:
            raise ConfigError(f"smp model {arch}/{encoder}: {err}") from None
        self.stride = 32

    def forward(self, x: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.stride, -width % self.stride
        out = self.net(F.pad(x, (0, pad_w, 0, pad_h)))
        return out[..., :height, :width]


def smp_model(name: str, in_channels: int = 3, encoder_weights: str | None = None) -> SmpModel:
    """An smp baseline: smp_<arch>_<encoder>, random init unless `encoder_weights` names local weights."""
    parts = name.split("_", 2)
    if len(parts) != 3:
        raise ConfigError(f"model {name!r}: smp models are named smp_<arch>_<encoder>, e.g. smp_unet_resnet34")
    return SmpModel(parts[1], parts[2], in_channels, encoder_weights)


register_prefix("smp_", smp_model)
