"""The Inception CNN branch and the magnitude MLP of AstroMAE (CAI ``blocks/photoz.py`` layout).

Module indices inside ``vis_inception`` and ``magnitude_block`` are those of the CAI model,
so its state dicts load one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INCEPTION_OUT = 1096
MAGNITUDE_OUT = 1024


class ConvBlock(nn.Module):
    """Conv → BatchNorm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class InceptionBlock(nn.Module):
    """Four parallel branches (1×1; 1×1→3×3; 1×1→5×5; maxpool→1×1) concatenated on channels.

    ``use_5x5=False`` drops the 5×5 branch from the forward pass. Its weights still exist,
    as in the CAI model (its last block is built with them and never uses them).
    """

    def __init__(self, in_channels: int, width: int, use_5x5: bool = True):
        super().__init__()
        self.use_5x5 = use_5x5
        self.branch1 = ConvBlock(in_channels, width, kernel_size=1)
        self.branch2 = nn.Sequential(
            ConvBlock(in_channels, width, kernel_size=1, padding=0),
            ConvBlock(width, width, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            ConvBlock(in_channels, width, kernel_size=1),
            ConvBlock(width, width, kernel_size=5, padding=2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, padding=1, stride=1),
            ConvBlock(in_channels, width, kernel_size=1),
        )

    @property
    def out_channels(self) -> int:
        return self.branch1.conv.out_channels * (4 if self.use_5x5 else 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4) if self.use_5x5 else (
            self.branch1,
            self.branch2,
            self.branch4,
        )
        return torch.cat([branch(x) for branch in branches], 1)


def _inception_stack(in_channels: int, embed_dim: int) -> nn.Sequential:
    """32×32 image → 1096 features: the CAI ``vis_inception`` Sequential, index for index."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=1),  # 0: the CAI conv2d_init
        nn.AvgPool2d(kernel_size=2, stride=2),  # 1: 32 → 16 px
        InceptionBlock(32, 16),  # 2: → 64 ch
        InceptionBlock(64, 16),  # 3: → 64 ch
        nn.AvgPool2d(kernel_size=2),  # 4: 16 → 8 px
        InceptionBlock(64, 8),  # 5: → 32 ch
        InceptionBlock(32, 8),  # 6: → 32 ch
        nn.AvgPool2d(kernel_size=2),  # 7: 8 → 4 px
        InceptionBlock(32, 4, use_5x5=False),  # 8: → 12 ch × 4 × 4 = 192
        nn.Flatten(),  # 9
        nn.Linear(embed_dim, INCEPTION_OUT),  # 10
        nn.ReLU(),  # 11
        nn.Linear(INCEPTION_OUT, INCEPTION_OUT),  # 12
    )


def _magnitude_mlp(n_bands: int) -> nn.Sequential:
    """Five magnitudes → 1024 features: Linear(5,1024), then four times ReLU + Linear."""
    layers: list[nn.Module] = [nn.Linear(n_bands, MAGNITUDE_OUT)]
    for _ in range(4):
        layers += [nn.ReLU(), nn.Linear(MAGNITUDE_OUT, MAGNITUDE_OUT)]
    return nn.Sequential(*layers)


class InceptionMagnitudeBranch(nn.Module):
    """The CAI ``inception_model``: image features (1096) and magnitude features (1024), concatenated."""

    def __init__(self, in_channels: int = 5, n_bands: int = 5, embed_dim: int = 192):
        super().__init__()
        self.vis_inception = _inception_stack(in_channels, embed_dim)
        self.magnitude_block = _magnitude_mlp(n_bands)

    def forward(self, image: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.vis_inception(image), self.magnitude_block(magnitude)), dim=1)
