"""Throwaway stand-ins for the modules a CAI checkpoint pickles (timm 0.4.12 and CAI ``blocks``).

A real CAI checkpoint refers to classes by module path: ``blocks.model_vit_inception.ViT_Astro``,
``blocks.photoz.Input_Mix_Model``, ``timm.models.vision_transformer.Block`` ... These sources
recreate those module paths and attribute layouts (written for these tests, not copied), so a
test can ``torch.save`` a DataParallel-wrapped model exactly as the CAI code did, then remove
the modules again and check that cai-edge reads the file without them.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

SOURCES = {
    "timm/__init__.py": "",
    "timm/models/__init__.py": "",
    "timm/models/layers/__init__.py": """
        from timm.models.layers.patch_embed import PatchEmbed
        from timm.models.layers.mlp import Mlp
        from timm.models.layers.drop import DropPath
    """,
    "timm/models/layers/patch_embed.py": """
        import torch.nn as nn
        class PatchEmbed(nn.Module):
            def __init__(self, img_size=32, patch_size=8, in_chans=5, embed_dim=192):
                super().__init__()
                self.img_size = (img_size, img_size)
                self.patch_size = (patch_size, patch_size)
                self.num_patches = (img_size // patch_size) ** 2
                self.flatten = True
                self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
                self.norm = nn.Identity()
            def forward(self, x):
                return self.norm(self.proj(x).flatten(2).transpose(1, 2))
    """,
    "timm/models/layers/mlp.py": """
        import torch.nn as nn
        class Mlp(nn.Module):
            def __init__(self, in_features, hidden_features):
                super().__init__()
                self.fc1 = nn.Linear(in_features, hidden_features)
                self.act = nn.GELU()
                self.fc2 = nn.Linear(hidden_features, in_features)
                self.drop = nn.Dropout(0.0)
            def forward(self, x):
                return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
    """,
    "timm/models/layers/drop.py": """
        import torch.nn as nn
        class DropPath(nn.Module):
            def __init__(self, p=0.0):
                super().__init__()
                self.drop_prob = p
            def forward(self, x):
                return x
    """,
    "timm/models/vision_transformer.py": """
        import torch.nn as nn
        from timm.models.layers import Mlp, PatchEmbed, DropPath
        class Attention(nn.Module):
            def __init__(self, dim, num_heads):
                super().__init__()
                self.num_heads = num_heads
                self.scale = (dim // num_heads) ** -0.5
                self.qkv = nn.Linear(dim, dim * 3, bias=True)
                self.attn_drop = nn.Dropout(0.0)
                self.proj = nn.Linear(dim, dim)
                self.proj_drop = nn.Dropout(0.0)
            def forward(self, x):
                B, N, C = x.shape
                h = self.num_heads
                q, k, v = self.qkv(x).reshape(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4)
                a = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
                return self.proj_drop(self.proj((a @ v).transpose(1, 2).reshape(B, N, C)))
        class Block(nn.Module):
            def __init__(self, dim, num_heads, mlp_ratio=4.0):
                super().__init__()
                self.norm1 = nn.LayerNorm(dim, eps=1e-6)
                self.attn = Attention(dim, num_heads)
                self.drop_path = DropPath(0.0)
                self.norm2 = nn.LayerNorm(dim, eps=1e-6)
                self.mlp = Mlp(dim, int(dim * mlp_ratio))
            def forward(self, x):
                x = x + self.drop_path(self.attn(self.norm1(x)))
                return x + self.drop_path(self.mlp(self.norm2(x)))
    """,
    "blocks/__init__.py": "",
    "blocks/photoz.py": """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        class ConvBlock(nn.Module):
            def __init__(self, cin, cout, **kw):
                super().__init__()
                self.conv = nn.Conv2d(cin, cout, **kw)
                self.bn = nn.BatchNorm2d(cout)
            def forward(self, x):
                return F.relu(self.bn(self.conv(x)))
        class InceptionBlock(nn.Module):
            def __init__(self, cin, w, is_custom=False):
                super().__init__()
                self.is_custom = is_custom
                self.branch1 = ConvBlock(cin, w, kernel_size=1)
                self.branch2 = nn.Sequential(ConvBlock(cin, w, kernel_size=1, padding=0), ConvBlock(w, w, kernel_size=3, padding=1))
                self.branch3 = nn.Sequential(ConvBlock(cin, w, kernel_size=1), ConvBlock(w, w, kernel_size=5, padding=2))
                self.branch4 = nn.Sequential(nn.MaxPool2d(3, padding=1, stride=1), ConvBlock(cin, w, kernel_size=1))
            def forward(self, x):
                bs = [self.branch1, self.branch2] + ([] if self.is_custom else [self.branch3]) + [self.branch4]
                return torch.cat([b(x) for b in bs], 1)
        class Input_Mix_Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.device = "cpu"
                self.conv2d_init = nn.Conv2d(5, 32, kernel_size=(1, 1))
                self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2)
                mag = [nn.Linear(5, 1024)]
                for _ in range(4):
                    mag += [nn.ReLU(), nn.Linear(1024, 1024)]
                self.magnitude_block = nn.Sequential(*mag)
                self.vis_inception = nn.Sequential(
                    self.conv2d_init, self.avgpool,
                    InceptionBlock(32, 16), InceptionBlock(64, 16), nn.AvgPool2d(kernel_size=2),
                    InceptionBlock(64, 8), InceptionBlock(32, 8), nn.AvgPool2d(kernel_size=2),
                    InceptionBlock(32, 4, is_custom=True),
                    nn.Flatten(), nn.Linear(192, 1096), nn.ReLU(), nn.Linear(1096, 1096),
                )
            def forward(self, x):
                return torch.cat((self.vis_inception(x[0]), self.magnitude_block(x[1].float())), axis=1)
    """,
    "blocks/model_vit_inception.py": """
        import torch
        import torch.nn as nn
        from blocks.photoz import Input_Mix_Model
        class ViT_Astro(nn.Module):
            def __init__(self, embed_dim, vit_layers):
                super().__init__()
                self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
                self.head = nn.Linear(embed_dim, embed_dim)
                self.inception_model = Input_Mix_Model()
                self.cls_token = vit_layers["cls_token"]
                self.pos_embed = vit_layers["pos_embed"]
                self.blocks = vit_layers["blocks"]
                self.patch_embed = vit_layers["patch_embed"]
                self.vit_block = nn.Sequential(nn.Linear(embed_dim, 1096), nn.ReLU(), nn.Linear(1096, 1096))
                self.concat_block = nn.Sequential(nn.Linear(3216, 1024), nn.ReLU(), nn.Linear(1024, 1))
            def forward(self, x):
                t = self.patch_embed(x[0])
                t = torch.cat((self.cls_token.expand(t.shape[0], -1, -1), t), dim=1) + self.pos_embed
                for blk in self.blocks:
                    t = blk(t)
                v = self.vit_block(self.head(self.fc_norm(t[:, 1:, :].mean(dim=1))))
                return self.concat_block(torch.cat((v, self.inception_model(x)), axis=1))
    """,
}

MODULE_ROOTS = ("timm", "blocks")


def write_sources(root: Path) -> None:
    for rel, text in SOURCES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def forget_modules(root: Path) -> None:
    """Undo the imports: drop the stand-in modules from sys.modules and their folder from sys.path."""
    for name in list(sys.modules):
        if name.split(".")[0] in MODULE_ROOTS:
            del sys.modules[name]
    while str(root) in sys.path:
        sys.path.remove(str(root))


def build_cai_model(root: Path, seed: int = 0):
    """A ViT_Astro in eval mode with random weights and BatchNorm statistics, built from the stand-ins."""
    import torch
    from torch import nn

    write_sources(root)
    sys.path.insert(0, str(root))
    from blocks.model_vit_inception import ViT_Astro
    from timm.models.layers import PatchEmbed
    from timm.models.vision_transformer import Block

    torch.manual_seed(seed)
    vit_layers = {
        "cls_token": nn.Parameter(torch.randn(1, 1, 192) * 0.02),
        "pos_embed": nn.Parameter(torch.randn(1, 17, 192) * 0.1, requires_grad=False),
        "blocks": nn.ModuleList([Block(192, 3) for _ in range(12)]),
        "patch_embed": PatchEmbed(),
    }
    model = ViT_Astro(192, vit_layers)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.1, 0.1)
    return model.eval()
