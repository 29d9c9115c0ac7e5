"""ChangeStar1x256: the Changen2 building-damage model (ViT-B, s1c5, fine-tuned on xView2).

One Siamese encoder (SAM ViT-B -> simple feature pyramid -> FarSeg, 256 channels at stride 4)
runs on the pre- and the post-disaster image. A ChangeMixin head then predicts

- building probability of each image: a 1x1 conv on that image's own features, sigmoid;
- 5-way change (damage) probabilities: a 3x3 conv-norm-GELU on the concatenated features in both
  time orders, summed, a 1x1 conv, softmax. Summing both orders makes the change output
  symmetric: swapping pre and post gives the same change probabilities.

Both heads are computed at stride 4 and upsampled 4x bilinearly with `align_corners=True`.
Change classes follow xView2: 0 background / no building, 1 no-damage, 2 minor, 3 major,
4 destroyed. Decoding as in the xView2 evaluation: `building = building_prob > 0.5`,
`damage = change_prob.argmax(1) * building`.

State-dict keys and shapes are those of the published checkpoint (321 tensors, 99,935,558
parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .farseg import FarSeg, SimpleFeaturePyramid
from .vit import NECK_CHANNELS, LayerNorm2d, SamViTB

CHANGE_CLASSES = 5
BUILDING_CLASSES = 1
SIZE_MULTIPLE = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DamageProbabilities:
    """Per-pixel output of `ChangeStar1x256`, all at input resolution.

    Attributes:
        building_prob: `(B, 1, H, W)` in 0..1, building probability of the pre-disaster image
            (the map xView2 localisation is scored on).
        post_building_prob: `(B, 1, H, W)` in 0..1, the same head applied to the post image.
        change_prob: `(B, 5, H, W)`, softmax over the change classes (sums to 1 per pixel).
    """

    building_prob: torch.Tensor
    post_building_prob: torch.Tensor
    change_prob: torch.Tensor


def normalize_pair(pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalise two `(B, 3, H, W)` RGB batches in 0..1 and stack them to `(B, 6, H, W)`.

    Equals albumentations' default `Normalize()` on 0..255 images, which the model was trained
    and evaluated with: `(x - mean) / std` with ImageNet mean and std on the 0..1 scale.
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=pre.dtype, device=pre.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=pre.dtype, device=pre.device).view(1, 3, 1, 1)
    return torch.cat([(pre - mean) / std, (post - mean) / std], dim=1)


class SiameseEncoder(nn.Module):
    """ViT -> pyramid -> FarSeg: `(N, 3, H, W)` normalised RGB to `(N, 256, H/4, W/4)` features."""

    def __init__(self) -> None:
        super().__init__()
        self.vit = SamViTB()
        self.sfp = SimpleFeaturePyramid(NECK_CHANNELS)
        self.farseg = FarSeg(NECK_CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.farseg(self.sfp(self.vit(x)))


class ChangeMixinHead(nn.Module):
    """Building and change logits from the two `(B, 256, h, w)` feature maps, upsampled 4x."""

    def __init__(self, channels: int = NECK_CHANNELS) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 3, padding=1, bias=False), LayerNorm2d(channels), nn.GELU()
        )
        self.change_conv = nn.Sequential(nn.Conv2d(channels, CHANGE_CLASSES, 1))
        self.semantic_conv = nn.Sequential(nn.Conv2d(channels, BUILDING_CLASSES, 1))

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return `(pre building, post building, change)` logits at 4x the feature size."""
        mixed = self.conv(torch.cat([pre, post], dim=1)) + self.conv(torch.cat([post, pre], dim=1))
        return (
            _upsample4(self.semantic_conv(pre)),
            _upsample4(self.semantic_conv(post)),
            _upsample4(self.change_conv(mixed)),
        )


def _upsample4(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=True)


class ChangeStar1x256(nn.Module):
    """Changen2 ChangeStar1x256 building-damage model (ViT-B encoder, 1 building + 5 change classes).

    Call `model(pre, post)` with two `(B, 3, H, W)` RGB batches in 0..1 (square, side a multiple
    of 32); get `DamageProbabilities`. The published weights were fine-tuned on 1024-px xView2
    tiles; other sizes work because the position tables are resampled.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = SiameseEncoder()
        self.head = ChangeMixinHead()

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> DamageProbabilities:
        """Damage probabilities for RGB pairs `pre`, `post` of shape `(B, 3, H, W)` in 0..1."""
        if pre.shape != post.shape or pre.ndim != 4 or pre.shape[1] != 3:
            raise InputError(
                f"The damage model needs pre and post images of the same shape (B, 3, H, W); got "
                f"{tuple(pre.shape)} and {tuple(post.shape)}. Convert both to RGB and resize them to one size."
            )
        return self.predict_normalized(normalize_pair(pre, post))

    def predict_normalized(self, x: torch.Tensor) -> DamageProbabilities:
        """Damage probabilities for `(B, 6, H, W)`: ImageNet-normalised pre RGB then post RGB.

        This is the input layout of the reference implementation.
        """
        check_size(x)
        b = x.shape[0]
        features = self.encoder(torch.cat([x[:, :3], x[:, 3:]], dim=0))
        pre_logit, post_logit, change_logit = self.head(features[:b], features[b:])
        return DamageProbabilities(
            building_prob=pre_logit.sigmoid(),
            post_building_prob=post_logit.sigmoid(),
            change_prob=change_logit.softmax(dim=1),
        )


def check_size(x: torch.Tensor) -> None:
    """Raise `InputError` unless `x` is `(B, 6, H, W)` with `H == W` and `H % 32 == 0`."""
    if x.ndim != 4 or x.shape[1] != 6:
        raise InputError(f"The damage model takes (B, 6, H, W) (pre RGB then post RGB); got {tuple(x.shape)}.")
    h, w = x.shape[-2:]
    if h != w or h % SIZE_MULTIPLE or h == 0:
        side = max(SIZE_MULTIPLE, -(-max(h, w) // SIZE_MULTIPLE) * SIZE_MULTIPLE)
        raise InputError(
            f"The damage model needs square images whose side is a multiple of {SIZE_MULTIPLE}; got "
            f"{h}x{w}. Pad or resize to {side}x{side} (xView2 tiles are 1024x1024), or tile the image."
        )
