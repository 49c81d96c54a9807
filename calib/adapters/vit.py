"""A plain-torch Vision Transformer with timm's parameter names, and the audio-prior model built on it.

Parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm`` or
``fc_norm``), so an AudioMAE / AST-style encoder's weights load by name; the input is one
spectrogram ``[B, 1, frames, mel bins]`` cut into ``patch_size`` squares (time-major token order).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from calib.constants import N_CLASSES


class PatchEmbed(nn.Module):
    def __init__(self, img_size: Sequence[int], patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.img_size = tuple(int(s) for s in img_size)
        self.grid = tuple(s // patch_size for s in self.img_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, tokens, D]


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Encoder: ``forward(x [B, in_chans, H, W]) -> [B, embed_dim]`` pooled features.

    ``global_pool="token"``: final ``norm`` then the class token; ``"avg"``: mean of the patch
    tokens then ``fc_norm`` (AudioMAE's fine-tuning layout)."""

    def __init__(self, img_size: Sequence[int] = (1024, 128), patch_size: int = 16, in_chans: int = 1,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, class_token: bool = True, global_pool: str = "avg", norm_eps: float = 1e-6):
        super().__init__()
        if global_pool not in ("avg", "token"):
            raise ValueError(f"global_pool {global_pool!r}: use 'avg' or 'token'")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        self.global_pool = global_pool
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        n_tokens = self.patch_embed.grid[0] * self.patch_embed.grid[1] + int(class_token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_eps) for _ in range(depth))
        if global_pool == "avg":
            self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        else:
            self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.embed_dim = embed_dim

    @property
    def img_size(self) -> tuple[int, int]:
        return self.patch_embed.img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        if self.global_pool == "avg":
            start = 1 if self.cls_token is not None else 0
            return self.fc_norm(x[:, start:].mean(dim=1))
        return self.norm(x)[:, 0]


class MLPHead(nn.Module):
    """Linear layers with GELU between them: ``layers.0 ... layers.K`` -> logits."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.gelu(x)
        return x


class AudioPriorNet(VisionTransformer):
    """Frozen ViT encoder + trainable MLP head (``head.layers.*``) -> class logits [B, n_classes].

    Only the head has ``requires_grad`` (the encoder is frozen, as when the head is trained on a
    pretrained AudioMAE encoder)."""

    def __init__(self, n_classes: int = N_CLASSES, head_hidden: Sequence[int] = (256,), **vit):
        super().__init__(**vit)
        self.requires_grad_(False)
        self.head = MLPHead(self.embed_dim, head_hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(super().forward(x))
