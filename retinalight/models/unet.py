"""The SA-UNet family (Guo et al., ICPR 2020): one parametrised U-Net gives every ablation arm.

| name      | depth | DropBlock | BatchNorm | attention | parameters (Table IV) |
|-----------|-------|-----------|-----------|-----------|-----------------------|
| unet23    | 4     |           |           |           | 2,158,705             |
| unet      | 3     |           |           |           | 535,793               |
| unet_sa   | 3     |           |           | yes       | 535,891               |
| sd_unet   | 3     | yes       |           |           | 535,793               |
| backbone  | 3     | yes       | yes       |           | 537,201 (+1,408 BN buffers) |
| sa_unet   | 3     | yes       | yes       | yes       | 537,299 (+1,408 BN buffers) |

Upsampling is a 3x3 transposed conv with stride 2 and bias: the paper's text says 2x2, but only 3x3 gives
Table IV's counts.
"""

from __future__ import annotations

import torch
from torch import nn

from retinalight.models.blocks import ConvBlock, SpatialAttention, check_divisible
from retinalight.models.registry import register_model


class UNet(nn.Module):
    """U-Net with switches for the SA-UNet ablation. Returns one channel of logits.

    Args:
        depth: number of 2x downsamplings (3: the 18-layer U-Net of SA-UNet, 4: the classic 23-layer one).
        base_width: channels of the first level, doubled at each downsampling.
        attention: spatial attention at the bottleneck (between encoder and decoder).
        drop_rate, block_size: DropBlock after every 3x3 conv (0 disables it).
        batch_norm: BatchNorm after every 3x3 conv (after DropBlock).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        depth: int = 3,
        base_width: int = 16,
        attention: bool = False,
        drop_rate: float = 0.0,
        block_size: int = 7,
        batch_norm: bool = False,
    ):
        super().__init__()
        self.depth = depth
        widths = [base_width * 2**i for i in range(depth + 1)]
        block = dict(drop_rate=drop_rate, block_size=block_size, batch_norm=batch_norm)
        self.encoder = nn.ModuleList(ConvBlock(c_in, c_out, **block) for c_in, c_out in zip([in_channels, *widths[:-2]], widths[:-1]))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(widths[-2], widths[-1], **block)
        self.attention = SpatialAttention() if attention else nn.Identity()
        self.up = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1) for c in reversed(widths[1:]))
        self.decoder = nn.ModuleList(ConvBlock(c, c // 2, **block) for c in reversed(widths[1:]))
        self.head = nn.Conv2d(base_width, out_channels, 1)

    def forward(self, x: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        """`fov` is accepted for a uniform call signature and not used."""
        check_divisible(x, 2**self.depth, type(self).__name__)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.attention(self.bottleneck(x))
        for up, block, skip in zip(self.up, self.decoder, reversed(skips)):
            x = block(torch.cat([skip, up(x)], dim=1))
        return self.head(x)


@register_model("unet23")
def unet23(in_channels: int = 3, base_width: int = 16) -> UNet:
    """Classic 23-layer U-Net: 4 downsamplings, 16..256 channels (2,158,705 parameters)."""
    return UNet(in_channels, depth=4, base_width=base_width)


@register_model("unet")
def unet(in_channels: int = 3, base_width: int = 16) -> UNet:
    """18-layer U-Net of SA-UNet's ablation: 3 downsamplings, 16..128 channels (535,793 parameters)."""
    return UNet(in_channels, base_width=base_width)


@register_model("unet_sa")
def unet_sa(in_channels: int = 3, base_width: int = 16) -> UNet:
    """U-Net + spatial attention at the bottleneck (535,891 parameters)."""
    return UNet(in_channels, base_width=base_width, attention=True)


@register_model("sd_unet")
def sd_unet(in_channels: int = 3, base_width: int = 16, drop_rate: float = 0.18, block_size: int = 7) -> UNet:
    """SD-Unet: U-Net + DropBlock after every 3x3 conv (535,793 parameters)."""
    return UNet(in_channels, base_width=base_width, drop_rate=drop_rate, block_size=block_size)


@register_model("backbone")
def backbone(in_channels: int = 3, base_width: int = 16, drop_rate: float = 0.18, block_size: int = 7) -> UNet:
    """SA-UNet's Backbone: SD-Unet + BatchNorm, the structured dropout conv block (537,201 parameters)."""
    return UNet(in_channels, base_width=base_width, drop_rate=drop_rate, block_size=block_size, batch_norm=True)


@register_model("sa_unet")
def sa_unet(in_channels: int = 3, base_width: int = 16, drop_rate: float = 0.18, block_size: int = 7) -> UNet:
    """SA-UNet: Backbone + spatial attention at the bottleneck (537,299 parameters)."""
    return UNet(in_channels, base_width=base_width, drop_rate=drop_rate, block_size=block_size, batch_norm=True, attention=True)
