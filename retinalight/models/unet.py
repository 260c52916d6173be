"""The SA-UNet family (Guo et al., ICPR 2020): one parametrised U-Net gives every ablation arm.

| name      | depth | DropBlock | BatchNorm | attention | parameters (Table IV) |
|-----------|-------|-----------|-----------|-----------|-----------------------|
| unet23    | 4     |           |           |           | 2,158,705             |
| unet      | 3     |           |           |           | 535,793               |
| unet_sa   | 3     |           |           | yes       | 535,891               |
| sd_unet   | 3     | yes       |           |           | 535,793               |
| backbone  | 3     | yes       | yes       |           | 537,201 (+1,408 BN buffers) |
| sa_unet   | 3     | yes       | yes       | yes       | 537,299 (+1,408 BN buffers) |

Built as the official Keras code (clguo/SA-UNet, `SA_UNet.py`) builds it: spatial attention sits inside
the bottleneck block, between its two convs; upsampling is a 3x3 transposed conv with stride 2 and bias
(the paper's text says 2x2, but only 3x3 gives Table IV's counts); BatchNorm uses Keras' momentum and
epsilon; weights start as Keras' (glorot-uniform, zero bias; he-normal for the attention conv) unless
`init="torch"` keeps PyTorch's defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from retinalight.models.blocks import ConvBlock, check_divisible, keras_init_
from retinalight.models.registry import register_model

INITS = ("keras", "torch")


class UNet(nn.Module):
    """U-Net with switches for the SA-UNet ablation. Returns one channel of logits.

    Args:
        depth: number of 2x downsamplings (3: the 18-layer U-Net of SA-UNet, 4: the classic 23-layer one).
        base_width: channels of the first level, doubled at each downsampling.
        attention: spatial attention inside the bottleneck block, between its two convs (as the official code).
        drop_rate, block_size: DropBlock after every 3x3 conv (0 disables it).
        batch_norm: BatchNorm after every 3x3 conv (after DropBlock).
        init: "keras" (glorot-uniform, as the official model) or "torch" (PyTorch's default init).
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
        init: str = "keras",
    ):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init={init!r}: choose from {', '.join(INITS)}")
        self.depth = depth
        widths = [base_width * 2**i for i in range(depth + 1)]
        block = dict(drop_rate=drop_rate, block_size=block_size, batch_norm=batch_norm)
        self.encoder = nn.ModuleList(ConvBlock(c_in, c_out, **block) for c_in, c_out in zip([in_channels, *widths[:-2]], widths[:-1]))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(widths[-2], widths[-1], attention=attention, **block)
        self.up = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1) for c in reversed(widths[1:]))
        self.decoder = nn.ModuleList(ConvBlock(c, c // 2, **block) for c in reversed(widths[1:]))
        self.head = nn.Conv2d(base_width, out_channels, 1)
        if init == "keras":
            keras_init_(self)

    def forward(self, x: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        """`fov` is accepted for a uniform call signature and not used."""
        check_divisible(x, 2**self.depth, type(self).__name__)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips)):
            x = block(torch.cat([skip, up(x)], dim=1))
        return self.head(x)


@register_model("unet23")
def unet23(in_channels: int = 3, base_width: int = 16, init: str = "keras") -> UNet:
    """Classic 23-layer U-Net: 4 downsamplings, 16..256 channels (2,158,705 parameters)."""
    return UNet(in_channels, depth=4, base_width=base_width, init=init)


@register_model("unet")
def unet(in_channels: int = 3, base_width: int = 16, init: str = "keras") -> UNet:
    """18-layer U-Net of SA-UNet's ablation: 3 downsamplings, 16..128 channels (535,793 parameters)."""
    return UNet(in_channels, base_width=base_width, init=init)


@register_model("unet_sa")
def unet_sa(in_channels: int = 3, base_width: int = 16, init: str = "keras") -> UNet:
    """U-Net + spatial attention inside the bottleneck block (535,891 parameters)."""
    return UNet(in_channels, base_width=base_width, attention=True, init=init)


@register_model("sd_unet")
def sd_unet(in_channels: int = 3, base_width: int = 16, drop_rate: float = 0.18, block_size: int = 7, init: str = "keras") -> UNet:
    """SD-Unet: U-Net + DropBlock after every 3x3 conv (535,793 parameters)."""
    return UNet(in_channels, base_width=base_width, drop_rate=drop_rate, block_size=block_size, init=init)


@register_model("backbone")
def backbone(in_channels: int = 3, base_width: int = 16, drop_rate: float = 0.18, block_size: int = 7, init: str = "keras") -> UNet:
    """SA-UNet's Backbone: SD-Unet + BatchNorm, the structured dropout conv block (537,201 parameters)."""
    return UNet(in_channels, base_width=base_width, drop_rate=drop_rate, block_size=block_size, batch_norm=True, init=init)


@register_model("sa_unet")
def sa_unet(in_channels: int = 3, base_width: int = 16, drop_rate: float = 0.18, block_size: int = 7, init: str = "keras") -> UNet:
    """SA-UNet: Backbone + spatial attention at the bottleneck (537,299 parameters)."""
    return UNet(in_channels, base_width=base_width, drop_rate=drop_rate, block_size=block_size, batch_norm=True, attention=True, init=init)
