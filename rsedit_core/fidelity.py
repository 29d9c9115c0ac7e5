"""How much an edit changed, inside and outside its mask: changed-pixel shares, PSNR and SSIM.

Computed on 8-bit levels (what is written): a pixel counts as changed when any channel moved by at
least one grey level. PSNR is infinite and SSIM 1.0 where the edit equals the source. SSIM is the
usual Gaussian-window SSIM (11 x 11, sigma 1.5, K1 0.01, K2 0.03, on the luminance
``0.299 R + 0.587 G + 0.114 B``), averaged over the region's pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _levels(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round()


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def _ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM of luminance images ``[1, 1, H, W]`` in 0..255 (reflect-padded windows)."""
    window = _gaussian().to(a.dtype)
    pad = window.shape[-1] // 2

    def blur(x):
        return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), window)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def _region(source, edit, where, ssim) -> dict:
    pixels = int(where.sum())
    if pixels == 0:
        return {"pixels": 0, "changed": None, "psnr": None, "ssim": None}
    diff = (source - edit).abs().amax(dim=0)  # [H, W], largest channel change
    changed = int(((diff >= 1) & where).sum())
    mse = float(((source - edit) ** 2).mean(dim=0)[where].mean())
    psnr = math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
    return {
        "pixels": pixels,
        "changed": changed / pixels,
        "psnr": psnr,
        "ssim": 1.0 if changed == 0 else float(ssim[where].mean()),
    }


@torch.no_grad()
def fidelity_report(source: torch.Tensor, edits: torch.Tensor, mask: torch.Tensor | None = None) -> list[dict]:
    """One report per edit: ``{"inside": {...}, "outside": {...}}`` with ``pixels``, ``changed``
    (share), ``psnr`` (dB, ``inf`` when equal) and ``ssim`` of the source against the edit.

    ``source`` is ``[B, 3, H, W]`` in 0..1, ``edits`` ``[B * V, 3, H, W]`` grouped by source;
    ``mask`` ``[1 or B, 1, H, W]`` (> 0 = inside) or None (the whole scene is inside).
    """
    repeats = edits.shape[0] // source.shape[0]
    luminance = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    reports = []
    for index in range(edits.shape[0]):
        src = _levels(source[index // repeats].double())
        out = _levels(edits[index].double())
        ssim = _ssim_map((src[None] * luminance).sum(1, keepdim=True), (out[None] * luminance).sum(1, keepdim=True))
        ssim = ssim[0, 0]
        if mask is None:
            inside = torch.ones(src.shape[-2:], dtype=torch.bool)
        else:
            inside = mask[min(index // repeats, mask.shape[0] - 1), 0] > 0
        reports.append({"inside": _region(src, out, inside, ssim), "outside": _region(src, out, ~inside, ssim)})
    return reports


def describe(report: dict) -> str:
    """One line for a report: ``inside: 41.2% changed, PSNR 18.3 dB, SSIM 0.612; outside: unchanged``."""

    def part(name: str, r: dict) -> str:
        if not r["pixels"]:
            return f"{name}: no pixels"
        if r["changed"] == 0:
            return f"{name}: unchanged (PSNR inf, SSIM 1.000)"
        return f"{name}: {r['changed']:.1%} changed, PSNR {r['psnr']:.1f} dB, SSIM {r['ssim']:.3f}"

    return f"{part('inside the mask', report['inside'])}; {part('outside', report['outside'])}"
