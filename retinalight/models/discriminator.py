"""Retina-GAN's discriminator (Hou & Zhang 2022, Fig. 6)."""

from __future__ import annotations

import torch
from torch import nn

from retinalight.models.registry import register_model


class PatchDiscriminator(nn.Module):
    """CNN discriminator on (preprocessed image, vessel map) pairs. Returns one logit per input.

    Each stage: conv 3x3 stride 2 -> ReLU -> BatchNorm, conv 3x3 stride 1 -> ReLU, max-pool 2x2, with the
    paper's widths 32-64-128-128-256-512; then global average pooling and a dense layer. Six stages shrink
    4096x, more than a 512x512 input has, so pooling uses ceil_mode and stops shrinking at 1x1 (the paper
    does not say where it stops pooling). Sigmoid belongs to the loss (BCE with logits).
    """

    def __init__(self, in_channels: int = 2, widths: tuple[int, ...] = (32, 64, 128, 128, 256, 512)):
        super().__init__()
        stages = []
        for c_in, c_out in zip((in_channels, *widths[:-1]), widths):
            stages += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(c_out),
                nn.Conv2d(c_out, c_out, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
        self.features = nn.Sequential(*stages)
        self.classifier = nn.Linear(widths[-1], 1)

    def forward(self, image: torch.Tensor, vessel: torch.Tensor) -> torch.Tensor:
        x = self.features(torch.cat([image, vessel], dim=1))
        return self.classifier(x.mean(dim=(2, 3)))


@register_model("patch_discriminator")
def patch_discriminator(in_channels: int = 2) -> PatchDiscriminator:
    """Retina-GAN's discriminator: (image, vessel map) -> logit; conv stages 32..512, GAP, dense."""
    return PatchDiscriminator(in_channels)
