"""Masked-autoencoder pretraining wrapper for the AstroMAE encoder (He et al. 2022).

The encoder sees a random 25% of the 16 patches; a 4-block, 192-wide decoder reconstructs
the pixels of the masked ones. Encoder parameter names equal AstroMAE's, so
``AstroMAE().load_state_dict(mae.encoder_state_dict(), strict=False)`` transfers them.
"""

from __future__ import annotations

import torch
from torch import nn

from cai_edge.models.vit import LAYER_NORM_EPS, Block, ViTEncoder, sincos_position_embedding


class MaskedAutoencoder(ViTEncoder):
    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 8,
        in_chans: int = 5,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        decoder_dim: int = 192,
        decoder_depth: int = 4,
        decoder_heads: int = 3,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
    ):
        super().__init__(img_size, patch_size, in_chans, embed_dim, depth, num_heads)
        self.in_chans = in_chans
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        grid = img_size // patch_size
        dec_pos = torch.from_numpy(sincos_position_embedding(decoder_dim, grid)).unsqueeze(0)
        self.decoder_pos_embed = nn.Parameter(dec_pos, requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(decoder_dim, decoder_heads) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=LAYER_NORM_EPS)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size**2 * in_chans)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, image: torch.Tensor) -> torch.Tensor:
        """``(N,C,H,W)`` → ``(N, patches, p·p·C)`` in the patch embedding's raster order."""
        n, c, h, w = image.shape
        p = self.patch_size
        x = image.reshape(n, c, h // p, p, w // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)

    def random_masking(self, tokens: torch.Tensor, generator: torch.Generator | None = None):
        """Keep a random ``1 - mask_ratio`` of the tokens; returns kept tokens, mask (1 = masked), restore index."""
        n, length, dim = tokens.shape
        keep = int(length * (1 - self.mask_ratio))
        noise = torch.rand(n, length, device=tokens.device, generator=generator)
        shuffle = torch.argsort(noise, dim=1)
        restore = torch.argsort(shuffle, dim=1)
        kept = torch.gather(tokens, 1, shuffle[:, :keep].unsqueeze(-1).expand(-1, -1, dim))
        mask = torch.ones(n, length, device=tokens.device)
        mask[:, :keep] = 0
        return kept, torch.gather(mask, 1, restore), restore

    def forward(self, image: torch.Tensor, generator: torch.Generator | None = None):
        """Returns ``(loss, prediction (N, patches, p·p·C), mask (N, patches))``."""
        tokens = self.patch_embed(image) + self.pos_embed[:, 1:, :]
        kept, mask, restore = self.random_masking(tokens, generator)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(kept.shape[0], -1, -1)
        x = torch.cat((cls, kept), dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_embed(self.norm(x))
        n_masked = restore.shape[1] + 1 - x.shape[1]
        x_ = torch.cat([x[:, 1:, :], self.mask_token.expand(x.shape[0], n_masked, -1)], dim=1)
        x_ = torch.gather(x_, 1, restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

        target = self.patchify(image)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        per_patch = ((pred - target) ** 2).mean(dim=-1)
        loss = (per_patch * mask).sum() / mask.sum()
        return loss, pred, mask

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's tensors under AstroMAE's names (``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``)."""
        prefixes = ("patch_embed.", "cls_token", "pos_embed", "blocks.")
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}
