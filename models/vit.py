"""The ViT encoder of AstroMAE (timm 0.4.12 layer names, MAE fixed sin-cos positions).

Parameter names follow timm's VisionTransformer (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.N.norm1``, ``blocks.N.attn.qkv`` ...) so that CAI state dicts and
MAE encoder weights map one to one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

LAYER_NORM_EPS = 1e-6


def sincos_position_embedding(embed_dim: int, grid_size: int, cls_token: bool = True) -> np.ndarray:
    """Fixed 2-D sin-cos position embedding of MAE, shape ``(grid²[+1], embed_dim)``.

    Half the channels encode the column index, half the row index; the CLS row is zeros.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be a multiple of 4, got {embed_dim}")
    # cols[i, j] = j and rows[i, j] = i for patch (i, j); MAE encodes the column index first.
    cols, rows = np.meshgrid(np.arange(grid_size, dtype=np.float64), np.arange(grid_size, dtype=np.float64))
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 4, dtype=np.float64) / (embed_dim / 4.0))

    def encode(positions: np.ndarray) -> np.ndarray:
        angles = np.outer(positions.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    emb = np.concatenate([encode(cols), encode(rows)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros((1, embed_dim)), emb], axis=0)
    return emb.astype(np.float32)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch×patch`` patches → tokens, via one strided convolution."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return self._forward_per_head(x)
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    def _forward_per_head(self, x: torch.Tensor) -> torch.Tensor:
        """The same attention, head by head on slices of the qkv output, for ONNX export.

        The timm form's 5-D permute and the final transpose become Transpose/Gather copies in
        ONNX Runtime (~10 % of the fp32 graph's time at batch 256); slicing the last axis and
        concatenating the heads needs neither, and each score is the same dot product.
        """
        d = x.shape[-1] // self.num_heads
        parts = self.qkv(x).split(d, dim=-1)  # q of each head, then k of each, then v of each
        heads = []
        for h in range(self.num_heads):
            q, k, v = parts[h], parts[self.num_heads + h], parts[2 * self.num_heads + h]
            heads.append(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ v)
        return self.proj(torch.cat(heads, dim=-1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Patch embedding, CLS token, fixed positions and transformer blocks.

    AstroMAE and its MAE pretraining wrapper both derive from this class, so the encoder's
    parameters carry the same names in both and pretraining weights load directly.
    """

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 8,
        in_chans: int = 5,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        grid = img_size // patch_size
        pos = torch.from_numpy(sincos_position_embedding(embed_dim, grid)).unsqueeze(0)
        # A frozen Parameter (not a buffer) because that is how MAE, and so the CAI state dicts, store it.
        self.pos_embed = nn.Parameter(pos, requires_grad=False)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """All tokens after the last block, ``(N, 1 + patches, embed_dim)``; CLS first."""
        tokens = self.patch_embed(image)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat((cls, tokens), dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return x
