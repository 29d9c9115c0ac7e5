"""Feature pyramid and FarSeg decoder on top of the ViT's stride-16 map.

- `SimpleFeaturePyramid` (ViTDet): one stride-16 map to four maps at strides 4, 8, 16, 32.
- `FarSeg`: an FPN, a foreground-scene relation module (each level is reweighted by its
  agreement with a global scene vector) and an asymmetric decoder that brings all levels to
  stride 4 and averages them.

Channel count is 256 throughout. All norms are channel layer norms, all activations exact GELU;
the decoder upsamples with bilinear interpolation using `align_corners=True`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vit import LayerNorm2d

LEVELS = 4


def _conv_norm(in_ch: int, out_ch: int, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=bias), LayerNorm2d(out_ch))


def _conv_norm_gelu(in_ch: int, out_ch: int, kernel: int = 1, bias: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias), LayerNorm2d(out_ch), nn.GELU()
    )


class SimpleFeaturePyramid(nn.Module):
    """`(B, C, h, w)` at stride 16 to four `(B, C, .)` maps at strides 4, 8, 16 and 32.

    Stride 4: two 2x transposed convs (C -> C/2 -> C/4); stride 8: one (C -> C/2); stride 16:
    identity; stride 32: 2x2 max pool. Each then gets two 1x1 conv + layer-norm projections to C.
    Attribute names `simfp_<log2 stride>` follow the published checkpoint.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.simfp_2 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 2, stride=2),
            LayerNorm2d(c // 2),
            nn.GELU(),
            nn.ConvTranspose2d(c // 2, c // 4, 2, stride=2),
            _conv_norm(c // 4, c),
            _conv_norm(c, c),
        )
        self.simfp_3 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 2, stride=2), _conv_norm(c // 2, c), _conv_norm(c, c)
        )
        self.simfp_4 = nn.Sequential(_conv_norm(c, c), _conv_norm(c, c))
        self.simfp_5 = nn.Sequential(nn.MaxPool2d(2, stride=2), _conv_norm(c, c), _conv_norm(c, c))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.simfp_2(x), self.simfp_3(x), self.simfp_4(x), self.simfp_5(x)]


class FPN(nn.Module):
    """Top-down feature pyramid: 1x1 lateral convs, nearest 2x upsampling, 3x3 output convs (no bias)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        for i in range(1, LEVELS + 1):
            self.add_module(f"fpn_inner{i}", nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False)))
            self.add_module(f"fpn_layer{i}", nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False)))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        top = getattr(self, f"fpn_inner{LEVELS}")(features[-1])
        outputs = [getattr(self, f"fpn_layer{LEVELS}")(top)]
        for i in range(LEVELS - 1, 0, -1):
            top = getattr(self, f"fpn_inner{i}")(features[i - 1]) + F.interpolate(top, scale_factor=2, mode="nearest")
            outputs.insert(0, getattr(self, f"fpn_layer{i}")(top))
        return outputs


class ForegroundSceneRelation(nn.Module):
    """FarSeg's relation module with one scene encoder and one projection per level.

    For level i with FPN map `p_i`: `r_i = sigmoid(<scene_i, content_i(p_i)>)` (dot product over
    channels, one weight per pixel), output `project_i(cat[r_i * reencode_i(p_i), p_i])`.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.scene_encoder = nn.ModuleList(
            nn.Sequential(*_conv_norm_gelu(c, c), *_conv_norm_gelu(c, c)) for _ in range(LEVELS)
        )
        self.content_encoders = nn.ModuleList(_conv_norm_gelu(c, c) for _ in range(LEVELS))
        self.feature_reencoders = nn.ModuleList(_conv_norm_gelu(c, c) for _ in range(LEVELS))
        # Upstream follows each projection with Dropout2d(0.1): weightless, and inactive at inference.
        self.project = nn.ModuleList(_conv_norm_gelu(2 * c, c, bias=False) for _ in range(LEVELS))

    def forward(self, scene: torch.Tensor, features: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for i, p in enumerate(features):
            relation = torch.sigmoid((self.scene_encoder[i](scene) * self.content_encoders[i](p)).sum(1, keepdim=True))
            outputs.append(self.project[i](torch.cat([relation * self.feature_reencoders[i](p), p], dim=1)))
        return outputs


class AsymmetricDecoder(nn.Module):
    """Bring strides 4/8/16/32 to stride 4 with 1/1/2/3 conv-norm-GELU stages, then average.

    Every stage but the stride-4 one ends in a 2x bilinear upsampling with `align_corners=True`.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for level in range(LEVELS):
            stages = [_conv_norm_gelu(channels, channels, kernel=3, bias=False) for _ in range(max(level, 1))]
            if level:
                for stage in stages:
                    stage.append(nn.UpsamplingBilinear2d(scale_factor=2))
            self.blocks.append(nn.Sequential(*stages))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return sum(block(f) for block, f in zip(self.blocks, features, strict=True)) / LEVELS


class FarSeg(nn.Module):
    """FPN, relation module and decoder: four `(B, C, .)` maps to one `(B, C, H/4, W/4)` map.

    The scene vector is the global average of the stride-32 pyramid input (before the FPN).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fpn = FPN(channels)
        self.fsr = ForegroundSceneRelation(channels)
        self.dec = AsymmetricDecoder(channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        scene = F.adaptive_avg_pool2d(features[-1], 1)
        return self.dec(self.fsr(scene, self.fpn(features)))
