"""SAM ViT-B image encoder, as the damage model's Siamese backbone uses it.

A plain ViT-B/16 (768 wide, 12 blocks, 12 heads) with SAM's conventions: tokens stay on a
`(B, h, w, C)` grid, most blocks attend inside 14x14 windows (the grid is zero-padded to a multiple
of 14 first), blocks 2, 5, 8 and 11 attend globally, and every attention adds decomposed relative
position biases. The absolute position table is learned for a 64x64 grid (1024 px) and resampled
to the actual grid, so any input whose side is a multiple of 16 works. A two-conv neck maps the
stride-16 grid to 256 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PATCH = 16
WIDTH = 768
DEPTH = 12
HEADS = 12
WINDOW = 14
GLOBAL_BLOCKS = (2, 5, 8, 11)
PRETRAIN_GRID = 64
NECK_CHANNELS = 256


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of a `(B, C, H, W)` map (eps 1e-6), per pixel."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def resample_pos_table(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Fit the learned `(1, 64, 64, C)` position table to a `(gh, gw)` token grid.

    Bicubic with `antialias=True` in float32, as the reference encoder does. PyTorch's antialiased
    bicubic uses a different kernel (PIL's) from plain bicubic even when enlarging, so the flag
    matters at every size but 1024 px, where the table is returned unchanged.
    """
    if tuple(table.shape[1:3]) == grid:
        return table
    resized = F.interpolate(table.float().permute(0, 3, 1, 2), size=grid, mode="bicubic", antialias=True)
    return resized.permute(0, 2, 3, 1).to(table.dtype)


def relative_position_rows(table: torch.Tensor, size: int) -> torch.Tensor:
    """Rows of a `(L, C)` relative-position table for every (query, key) pair on one axis.

    The table is linearly resized to `2*size - 1` entries when it was learned for another length
    (global blocks learn 127 = 2*64 - 1). Returns `(size, size, C)` with entry `[q, k]` for the
    offset `q - k`.
    """
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear").squeeze(0).t()
    pos = torch.arange(size, device=table.device)
    return table[pos[:, None] - pos[None, :] + size - 1]


class Attention(nn.Module):
    """Multi-head self-attention on a `(B, h, w, C)` grid with decomposed relative position bias."""

    def __init__(self, width: int, heads: int, rel_size: int) -> None:
        super().__init__()
        self.heads = heads
        head_dim = width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, width = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, h * w, -1).unbind(0)

        # The bias uses the unscaled query; only q.k is scaled by 1/sqrt(head_dim).
        grid_q = q.reshape(b * self.heads, h, w, -1)
        bias_h = torch.einsum("nhwc,hkc->nhwk", grid_q, relative_position_rows(self.rel_pos_h, h))
        bias_w = torch.einsum("nhwc,wkc->nhwk", grid_q, relative_position_rows(self.rel_pos_w, w))
        bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(b * self.heads, h * w, h * w)

        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.view(b, self.heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, width)
        return self.proj(out)


class Mlp(nn.Module):
    """Two linear layers with exact GELU between them."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(width, hidden)
        self.lin2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


def to_windows(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad a `(B, h, w, C)` grid to multiples of `window`; return `(B*n, window, window, C)`."""
    b, h, w, c = x.shape
    ph, pw = -h % window, -w % window
    x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def from_windows(x: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of `to_windows`: reassemble the padded grid and crop it to `size`."""
    hp, wp = padded
    b = x.shape[0] // ((hp // window) * (wp // window))
    x = x.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, : size[0], : size[1]]


class Block(nn.Module):
    """Pre-norm transformer block; windowed attention when `window > 0`, global otherwise."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(WIDTH, eps=1e-6)
        self.attn = Attention(WIDTH, HEADS, window if window else PRETRAIN_GRID)
        self.norm2 = nn.LayerNorm(WIDTH, eps=1e-6)
        self.mlp = Mlp(WIDTH, 4 * WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window:
            size = (y.shape[1], y.shape[2])
            y, padded = to_windows(y, self.window)
            y = from_windows(self.attn(y), self.window, padded, size)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """16x16 patches to 768-d tokens: `(B, 3, H, W) -> (B, H/16, W/16, 768)`."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, WIDTH, PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class SamViTB(nn.Module):
    """SAM ViT-B encoder with its 256-channel neck: `(B, 3, H, W) -> (B, 256, H/16, W/16)`.

    Input is ImageNet-normalised RGB; H and W multiples of 16.
    """

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed()
        self.pos_embed = nn.Parameter(torch.zeros(1, PRETRAIN_GRID, PRETRAIN_GRID, WIDTH))
        self.blocks = nn.ModuleList(Block(0 if i in GLOBAL_BLOCKS else WINDOW) for i in range(DEPTH))
        self.neck = nn.Sequential(
            nn.Conv2d(WIDTH, NECK_CHANNELS, 1, bias=False),
            LayerNorm2d(NECK_CHANNELS),
            nn.Conv2d(NECK_CHANNELS, NECK_CHANNELS, 3, padding=1, bias=False),
            LayerNorm2d(NECK_CHANNELS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + resample_pos_table(self.pos_embed, (x.shape[1], x.shape[2]))
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
