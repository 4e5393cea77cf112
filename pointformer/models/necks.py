"""``SecondFPN``: SECOND's 2D conv stages on the BEV map, then each stage's output brought to a
common stride (deconvolution up, strided convolution down) and concatenated (mmdet3d ``SECOND`` +
``SECONDFPN``). With ``conv_shortcut`` every conv unit whose output has its input's shape adds
the input (FlatFormer's published BEV part)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import nn


class SecondFPN(nn.Module):
    """(B, in_channels, H, W) -> (B, sum(upsample_channels), H / out_stride, W / out_stride).

    Stage ``i``: Conv3x3(stride ``layer_strides[i]``) + BN + ReLU, then ``layer_nums[i]`` times
    Conv3x3 + BN + ReLU, all to ``out_channels[i]``. Its output is resampled by
    ``upsample_strides[i]``: > 1 ConvTranspose2d (kernel = stride), 1 a 1x1 Conv2d, < 1 (e.g. 0.5)
    a Conv2d with kernel = stride = 1 / s; then BN + ReLU to ``upsample_channels[i]``. Every
    stage must land on the same stride. H and W must be multiples of ``prod(layer_strides)``."""

    def __init__(
        self,
        in_channels: int,
        layer_nums: Sequence[int] = (3, 3),
        layer_strides: Sequence[int] = (1, 2),
        out_channels: Sequence[int] = (64, 128),
        upsample_strides: Sequence[float] = (1, 2),
        upsample_channels: Sequence[int] = (128, 128),
        conv_shortcut: bool = True,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        layer_nums = _int_list(layer_nums, "layer_nums", minimum=0)
        layer_strides = _int_list(layer_strides, "layer_strides", minimum=1)
        out_channels = _int_list(out_channels, "out_channels", minimum=1)
        upsample_channels = _int_list(upsample_channels, "upsample_channels", minimum=1)
        resample = [_upsample_ratio(s) for s in upsample_strides]
        lengths = {len(layer_nums), len(layer_strides), len(out_channels), len(resample), len(upsample_channels)}
        if len(lengths) != 1 or not layer_nums:
            raise ValueError(
                "layer_nums, layer_strides, out_channels, upsample_strides and upsample_channels must be non-empty "
                f"and of one length, got {len(layer_nums)}, {len(layer_strides)}, {len(out_channels)}, "
                f"{len(resample)}, {len(upsample_channels)}"
            )
        self.out_stride = _common_stride(layer_strides, resample)
        self.downsample = math.prod(layer_strides)
        self.conv_shortcut = bool(conv_shortcut)
        self.out_channels = sum(upsample_channels)

        def norm(channels: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(channels, eps=norm_eps, momentum=norm_momentum)

        stages = []
        stage_in = [self.in_channels, *out_channels[:-1]]
        for width_in, width, count, stride in zip(stage_in, out_channels, layer_nums, layer_strides):
            units = [_conv_unit(width_in, width, stride, norm(width))]
            units += [_conv_unit(width, width, 1, norm(width)) for _ in range(count)]
            stages.append(nn.ModuleList(units))
        self.stages = nn.ModuleList(stages)
        self.deblocks = nn.ModuleList(
            nn.Sequential(_resample_layer(width, up_width, ratio), norm(up_width), nn.ReLU(inplace=True))
            for width, up_width, ratio in zip(out_channels, upsample_channels, resample)
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """mmcv's Kaiming init (normal, fan_out, ReLU gain, zero bias) on every (transposed) conv."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        if bev.dim() != 4 or bev.shape[1] != self.in_channels:
            raise ValueError(f"bev must be (B, {self.in_channels}, H, W), got shape {tuple(bev.shape)}")
        height, width = bev.shape[2:]
        if height % self.downsample or width % self.downsample:
            raise ValueError(f"bev H, W must be multiples of prod(layer_strides)={self.downsample}, got {height}x{width}")
        x = bev
        outputs = []
        for stage, deblock in zip(self.stages, self.deblocks):
            for unit in stage:
                y = unit(x)
                x = y + x if self.conv_shortcut and y.shape == x.shape else y
            outputs.append(deblock(x))
        return torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]


def _conv_unit(width_in: int, width: int, stride: int, norm: nn.BatchNorm2d) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(width_in, width, 3, stride=stride, padding=1, bias=False), norm, nn.ReLU(inplace=True)
    )


def _resample_layer(width_in: int, width: int, ratio: Fraction) -> nn.Module:
    if ratio > 1:
        factor = int(ratio)
        return nn.ConvTranspose2d(width_in, width, factor, stride=factor, bias=False)
    factor = int(1 / ratio)
    return nn.Conv2d(width_in, width, factor, stride=factor, bias=False)


def _upsample_ratio(value) -> Fraction:
    """An upsample stride as an exact fraction: an integer >= 1 or 1 / integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"upsample_strides must be positive numbers (k or 1/k), got {value!r}")
    ratio = Fraction(value).limit_denominator(1000)
    if abs(float(ratio) - float(value)) > 1e-9 or (ratio.numerator != 1 and ratio.denominator != 1):
        raise ValueError(f"upsample_strides must be an integer k >= 1 or 1/k, got {value!r}")
    return ratio


def _common_stride(layer_strides: list[int], resample: list[Fraction]) -> int:
    """The output stride every stage reaches (cumulative stride / upsample stride)."""
    strides = [Fraction(math.prod(layer_strides[: i + 1])) / ratio for i, ratio in enumerate(resample)]
    if len(set(strides)) != 1 or strides[0].denominator != 1:
        raise ValueError(
            f"layer_strides {layer_strides} and upsample_strides {[str(r) for r in resample]} must bring every "
            f"stage to one integer output stride, got {[str(s) for s in strides]}"
        )
    return int(strides[0])


def _int_list(values, name: str, minimum: int) -> list[int]:
    if isinstance(values, (str, numbers.Number)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
            raise ValueError(f"{name} must hold ints >= {minimum}, got {list(values)}")
    return [int(v) for v in values]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
