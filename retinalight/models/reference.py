"""The benchmark's reference network: SA-UNet's shape written plainly, to tell what the registry's blocks cost.

`bench` times it beside every model (results/bench); a test checks that its FLOPs match SA-UNet's within 2%.
"""

from __future__ import annotations

import torch
from torch import nn

from retinalight.models.registry import register_model


class PlainUNet(nn.Module):
    """The reference: SA-UNet's shape (16-32-64-128, three poolings, 3x3 transposed convs) written plainly,
    conv-BN-ReLU twice per level, no DropBlock, no attention, no shared blocks."""

    def __init__(self, widths=(16, 32, 64, 128)):
        super().__init__()

        def double(c_in, c_out):
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            )  # fmt: skip

        self.down = nn.ModuleList([double(3, widths[0])] + [double(a, b) for a, b in zip(widths[:-2], widths[1:-1])])
        self.bottom = double(widths[-2], widths[-1])
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(b, a, 3, stride=2, padding=1, output_padding=1) for a, b in zip(widths[-2::-1], widths[:0:-1])
        )
        self.decode = nn.ModuleList(double(2 * a, a) for a in widths[-2::-1])
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x, fov=None):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, block in zip(self.up, self.decode):
            x = block(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


@register_model("plain_unet")
def plain_unet(widths: tuple = (16, 32, 64, 128)) -> nn.Module:
    """Reference for `bench`: SA-UNet's widths and depth as one plain file (conv-BN-ReLU, no DropBlock/attention)."""
    return PlainUNet(tuple(widths))
