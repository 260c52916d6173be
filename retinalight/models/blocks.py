"""Building blocks shared by the networks: conv blocks, DropBlock, spatial attention."""

from __future__ import annotations

import torch
from timm.layers import DropBlock2d
from torch import nn


class SpatialAttention(nn.Module):
    """CBAM's spatial attention (Woo et al. 2018), as in SA-UNet: channel-wise max and mean -> 7x7 conv
    (no bias, 98 parameters) -> sigmoid -> multiply with the input."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


def dropblock(drop_rate: float, block_size: int) -> nn.Module:
    """timm's DropBlock2d set up as the official SA-UNet Keras layer: one mask per channel, output rescaled by
    numel / kept, inactive in eval mode. Difference: timm may seed a block centre near the border (the
    block is clipped there); the Keras layer seeds only where a whole block fits. Same gamma formula."""
    if drop_rate <= 0:
        return nn.Identity()
    return DropBlock2d(drop_prob=drop_rate, block_size=block_size, couple_channels=False)


class ConvBlock(nn.Sequential):
    """Two times conv 3x3 -> [DropBlock] -> [BatchNorm] -> ReLU.

    With drop_rate=0 and batch_norm=False this is U-Net's plain block; with DropBlock it is SD-Unet's; with
    both it is SA-UNet's "structured dropout convolutional block"."""

    def __init__(self, in_channels: int, out_channels: int, drop_rate: float = 0.0, block_size: int = 7, batch_norm: bool = False):
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers += [nn.Conv2d(c_in, out_channels, 3, padding=1), dropblock(drop_rate, block_size)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*(m for m in layers if not isinstance(m, nn.Identity)))


def check_divisible(x: torch.Tensor, factor: int, model: str) -> None:
    """A clear error for inputs the encoder cannot halve cleanly."""
    height, width = x.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(f"{model}: input {height}x{width} must have sides divisible by {factor} (pad it first)")
