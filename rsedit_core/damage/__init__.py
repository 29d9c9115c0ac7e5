"""Building-damage assessment with Changen2's ChangeStar1x256 (ViT-B, fine-tuned on xView2).

Our own implementation: it depends on torch (and safetensors for `.safetensors` files) only,
and loads the published weights by their original key names.
"""

from .checkpoint import (
    check_damage_checkpoint_file,
    check_damage_state_dict,
    convert_checkpoint,
    load_damage_model,
    read_damage_state_dict,
)
from .inference import DamageAssessment, assess, check_scene_pair, check_tile, colour_map, overlay, read_damage_map
from .metrics import DAMAGE_CLASS_NAMES, DamageMetrics, DamageScores, check_ground_truth, damage_scores
from .model import CHANGE_CLASSES, ChangeStar1x256, DamageProbabilities, normalize_pair

__all__ = [
    "CHANGE_CLASSES",
    "DAMAGE_CLASS_NAMES",
    "ChangeStar1x256",
    "DamageAssessment",
    "DamageMetrics",
    "DamageProbabilities",
    "DamageScores",
    "assess",
    "check_ground_truth",
    "check_scene_pair",
    "check_tile",
    "colour_map",
    "damage_scores",
    "overlay",
    "read_damage_map",
    "check_damage_checkpoint_file",
    "check_damage_state_dict",
    "convert_checkpoint",
    "load_damage_model",
    "normalize_pair",
    "read_damage_state_dict",
]
