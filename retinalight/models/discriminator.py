"""Retina-GAN's discriminator (Hou & Zhang 2022, Fig. 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retinalight.models.registry import register_model


class DiscriminatorStage(nn.Module):
    """conv 3x3 stride 2 -> ReLU -> BatchNorm, conv 3x3 -> ReLU, max-pool 2x2; the two halvings are
    skipped once the map is smaller than 2 x `min_size`, so the deepest stages still see a map and
    BatchNorm still has pixels to normalise over."""

    def __init__(self, in_channels: int, out_channels: int, min_size: int = 4):
        super().__init__()
        self.min_size = min_size
        self.down = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)
        self.conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def _halves(self, x: torch.Tensor) -> bool:
        return min(x.shape[-2:]) >= 2 * self.min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(F.relu(F.conv2d(x, self.down.weight, self.down.bias, stride=2 if self._halves(x) else 1, padding=1)))
        x = F.relu(self.conv(x))
        return F.max_pool2d(x, 2) if self._halves(x) else x


class PatchDiscriminator(nn.Module):
    """CNN discriminator on (fundus channels, vessel map) pairs. Returns one logit per input.

    Six stages with the paper's widths 32-64-128-128-256-512, then global average pooling and a dense
    layer (the sigmoid belongs to the loss: BCE with logits). Six stages halving twice each would shrink
    a side 4096x, more than the paper's 512x512 input has (the paper does not say where it stops); here a
    stage stops halving at 4x4 (`DiscriminatorStage`).
    """

    def __init__(self, in_channels: int = 2, widths: tuple[int, ...] = (32, 64, 128, 128, 256, 512), min_size: int = 4):
        super().__init__()
        self.stages = nn.Sequential(
            *(DiscriminatorStage(c_in, c_out, min_size) for c_in, c_out in zip((in_channels, *widths[:-1]), widths))
        )
        self.classifier = nn.Linear(widths[-1], 1)

    def forward(self, image: torch.Tensor, vessel: torch.Tensor) -> torch.Tensor:
        x = self.stages(torch.cat([image, vessel], dim=1))
        return self.classifier(x.mean(dim=(2, 3)))


@register_model("patch_discriminator")
def patch_discriminator(
    in_channels: int = 2, widths: tuple[int, ...] = (32, 64, 128, 128, 256, 512), min_size: int = 4
) -> PatchDiscriminator:
    """Retina-GAN's discriminator: (image, vessel map) -> logit; conv stages 32..512, GAP, dense."""
    return PatchDiscriminator(in_channels, tuple(widths), min_size)
