"""A pretrained backbone as a frozen multi-stage feature extractor.

The extractor runs only the stages it needs and returns them by name (``engine.backbones``); its weights
come from ``engine.weights`` and its input from ``engine.preprocessing``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from anomalyapp.engine.backbones import LAYER_NAMES, backbone_spec, fold_batchnorm


class FeatureExtractor(nn.Module):
    """Frozen backbone returning the requested stages as a dict of NCHW tensors."""

    def __init__(self, name: str, layers: tuple[str, ...], network: nn.Module):
        super().__init__()
        for layer in layers:
            if layer not in LAYER_NAMES:
                raise ValueError(f"unknown layer {layer!r}; choose from {', '.join(LAYER_NAMES)}")
        self.spec = backbone_spec(name)
        self.layers = tuple(layers)
        # channels_last lets oneDNN pick its fast depthwise and 1x1 kernels: ~1.6x on a CPU.
        self.network = fold_batchnorm(network.eval()).to(memory_format=torch.channels_last)
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.to(next(self.network.parameters()).device).contiguous(memory_format=torch.channels_last)
        return self.network.stages(x, self.layers)

    def channels(self) -> list[int]:
        return [self.spec.channels[layer] for layer in self.layers]


def stage_weights(channels: list[int], weighting: str) -> list[float]:
    """The factor each stage's features are multiplied by before the stages are joined into one vector.

    "concatenated": 1 for every stage, so a stage weighs in a distance by its channel count (Lite0's stride-16
    stage holds 112 of PatchCore's 152 dimensions). "balanced": sqrt(total / (stages * channels)), so that every
    stage holds the same share of the squared distance (for channels of alike spread), as the authors' per-stage
    projection to a common width gives, while the vector keeps its width and overall scale.
    """
    if weighting == "concatenated":
        return [1.0] * len(channels)
    if weighting == "balanced":
        total = sum(channels)
        return [math.sqrt(total / (len(channels) * count)) for count in channels]
    raise ValueError(f"unknown stage weighting {weighting!r}")
