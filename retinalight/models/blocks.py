"""Building blocks shared by the networks: conv blocks, DropBlock, spatial attention."""

from __future__ import annotations

import math

import torch
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


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al. 2018) as the official SA-UNet Keras layer: seeds only where a whole
    block_size x block_size block fits, with gamma = drop_rate / bs^2 * HW / ((H-bs+1)(W-bs+1)), one mask per
    channel, output rescaled by numel / kept; identity in eval mode.

    Written here rather than taken from timm (`DropBlock2d`) because timm also seeds blocks that the border
    clips, and its 7x7 max-pool mask made a CPU training step of SA-UNet about 2x slower; on a CPU this version
    draws only the few seeds (`bernoulli_positions`) and paints their blocks directly, in the input's memory
    layout. On a GPU that draw reads a count back to the host at every layer (SA-UNet's 128x128 training step
    took 25 ms on an H200, its 592x592 step 30 ms: launch- and sync-bound), so there the seeds are a dense
    Bernoulli map and the blocks a max-pool (`dense_keep_mask`): the same distribution, another random stream.
    """

    def __init__(self, drop_rate: float, block_size: int = 7):
        super().__init__()
        self.drop_rate, self.block_size = drop_rate, block_size
        self.scale = 1.0  # the share of drop_rate in force: a training schedule may ramp it up (Ghiasi et al.)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drop_rate = self.drop_rate * self.scale
        if not self.training or drop_rate <= 0:
            return x
        batch, channels, height, width = x.shape
        size = min(self.block_size, height, width)
        valid_h, valid_w = height - size + 1, width - size + 1
        gamma = drop_rate / size**2 * height * width / (valid_h * valid_w)
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()
        with torch.no_grad():
            if x.is_cuda:  # no host sync: the sparse draw below reads its count back once per layer, 28 stalls a step
                keep = dense_keep_mask(torch.rand(batch, channels, valid_h, valid_w, device=x.device) < gamma, size, x)
            else:
                keep = sparse_keep_mask(bernoulli_positions(batch * channels * valid_h * valid_w, gamma, x.device), size, x)
            keep.mul_(keep.numel() / keep.sum().clamp(min=1))
        return x * keep

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, block_size={self.block_size}"


def sparse_keep_mask(seeds: torch.Tensor, size: int, x: torch.Tensor) -> torch.Tensor:
    """1 where x is kept, 0 in the size x size block below and right of each seed; `seeds` are flat indices
    of (plane, top, left) over the valid corners, plane = sample * channels + channel. Each seed becomes an
    offset in x's own memory layout (NCHW or channels_last), so the mask multiplies without a copy."""
    channels, height, width = x.shape[1:]
    valid_h, valid_w = height - size + 1, width - size + 1
    plane, seeds = seeds.div(valid_h * valid_w, rounding_mode="floor"), seeds % (valid_h * valid_w)
    top, left = seeds.div(valid_w, rounding_mode="floor"), seeds % valid_w
    stride_n, stride_c, stride_h, stride_w = x.stride()
    corner = plane.div(channels, rounding_mode="floor") * stride_n + plane % channels * stride_c + top * stride_h + left * stride_w
    offsets = torch.arange(size, device=x.device)
    block = (offsets[:, None] * stride_h + offsets[None, :] * stride_w).view(-1)
    keep = torch.ones(x.numel(), device=x.device, dtype=x.dtype)
    keep[(corner[:, None] + block).view(-1)] = 0
    return keep.as_strided(x.shape, x.stride())


def dense_keep_mask(seeds: torch.Tensor, size: int, x: torch.Tensor) -> torch.Tensor:
    """The same mask from a boolean map of seeds over the valid corners (batch, channels, valid_h, valid_w):
    a pixel is dropped when a seed sits within size - 1 above and left of it, a size x size max-pool of the
    seed map padded by size - 1. Denser work than `sparse_keep_mask`, but its size is known up front, so a
    GPU never waits for the host."""
    pooled = nn.functional.max_pool2d(nn.functional.pad(seeds.to(x.dtype), (size - 1,) * 4), size, stride=1)
    layout = (
        torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format
    )
    return (1 - pooled).contiguous(memory_format=layout)


def bernoulli_positions(count: int, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sorted indices i < count at which independent Bernoulli(p) draws succeed, drawn as geometric gaps
    between successes: the same distribution as `torch.rand(count) < p`, at a cost proportional to the
    successes (DropBlock's p is about 0.004: one draw per position was a third of SA-UNet's training step)."""
    if p >= 1:
        return torch.arange(count, device=device)
    expected = count * p
    draws = int(expected + 6 * math.sqrt(expected) + 16)  # 6 standard deviations above the mean: one pass
    positions = torch.empty(draws, device=device).geometric_(p).long().cumsum(0) - 1  # gaps count the success
    while positions[-1] < count:  # the draws fell short: continue from the last success
        more = torch.empty(draws, device=device).geometric_(p).long().cumsum(0) + positions[-1]
        positions = torch.cat([positions, more])
    return positions[positions < count]


class ConvBlock(nn.Sequential):
    """Two times conv 3x3 -> [DropBlock] -> [BatchNorm] -> ReLU, optionally with spatial attention between.

    With drop_rate=0 and batch_norm=False this is U-Net's plain block; with DropBlock it is SD-Unet's; with
    both it is SA-UNet's "structured dropout convolutional block". `attention=True` puts `SpatialAttention`
    after the first ReLU, where the official SA-UNet code has it in the bottleneck block. BatchNorm takes
    Keras' defaults (momentum 0.99 = PyTorch 0.01, eps 1e-3), as the official model does."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        drop_rate: float = 0.0,
        block_size: int = 7,
        batch_norm: bool = False,
        attention: bool = False,
    ):
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1))
            if drop_rate > 0:
                layers.append(DropBlock(drop_rate, block_size))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM))
            layers.append(nn.ReLU(inplace=True))
            if attention and c_in == in_channels:
                layers.append(SpatialAttention())
        super().__init__(*layers)


KERAS_BN_EPS, KERAS_BN_MOMENTUM = 1e-3, 0.01  # Keras BatchNormalization(momentum=0.99, epsilon=1e-3)


def keras_init_(model: nn.Module) -> nn.Module:
    """Initialise as Keras does: glorot-uniform weights and zero biases for convs and transposed convs,
    he-normal (truncated, Keras' VarianceScaling) for the spatial-attention conv. Returns `model`."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, SpatialAttention):
            weight = module.conv.weight
            std = math.sqrt(2.0 / nn.init._calculate_fan_in_and_fan_out(weight)[0]) / 0.87962566103423978
            nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)
    return model


def check_divisible(x: torch.Tensor, factor: int, model: str) -> None:
    """A clear error for inputs the encoder cannot halve cleanly."""
    height, width = x.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(f"{model}: input {height}x{width} must have sides divisible by {factor} (pad it first)")
