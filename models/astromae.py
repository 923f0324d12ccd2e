"""AstroMAE: the CAI photometric-redshift network (ViT encoder + Inception CNN + magnitude MLP).

``AstroMAE()(image, magnitude)`` takes ``image (N,5,32,32)`` in u,g,r,i,z order and
``magnitude (N,5)`` and returns the redshift ``(N,)``. The CAI model takes a Python list
``[image, magnitude]`` and returns ``(N,1)``; two tensors in and a flat vector out is what the
ONNX export needs. Parameter names are the CAI ones, so its state dicts map one to one.
"""

from __future__ import annotations

import torch
from torch import nn

from cai_edge.models.inception import INCEPTION_OUT, MAGNITUDE_OUT, InceptionMagnitudeBranch
from cai_edge.models.vit import LAYER_NORM_EPS, ViTEncoder

IMAGE_SIZE = 32
N_BANDS = 5
VIT_OUT = 1096


class AstroMAE(ViTEncoder):
    """The fine-tuning architecture of AstroMAE (``ViT_Astro`` in the CAI code)."""

    def __init__(self, embed_dim: int = 192, depth: int = 12, num_heads: int = 3):
        super().__init__(IMAGE_SIZE, 8, N_BANDS, embed_dim, depth, num_heads)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(embed_dim, embed_dim)
        self.vit_block = nn.Sequential(nn.Linear(embed_dim, VIT_OUT), nn.ReLU(), nn.Linear(VIT_OUT, VIT_OUT))
        self.inception_model = InceptionMagnitudeBranch(N_BANDS, N_BANDS, embed_dim)
        self.concat_block = nn.Sequential(
            nn.Linear(VIT_OUT + INCEPTION_OUT + MAGNITUDE_OUT, 1024), nn.ReLU(), nn.Linear(1024, 1)
        )

    def vit_features(self, image: torch.Tensor) -> torch.Tensor:
        """Mean of the patch tokens (CLS excluded) → fc_norm → head → vit_block: ``(N, 1096)``."""
        pooled = self.encode(image)[:, 1:, :].mean(dim=1)
        return self.vit_block(self.head(self.fc_norm(pooled)))

    def forward(self, image: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        features = torch.cat((self.vit_features(image), self.inception_model(image, magnitude)), dim=1)
        return self.concat_block(features).squeeze(1)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The MAE-pretrained encoder's parameters (frozen during AstroMAE fine-tuning)."""
        return [*self.patch_embed.parameters(), self.cls_token, self.pos_embed, *self.blocks.parameters()]
