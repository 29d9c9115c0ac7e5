"""Test double of ``comfy.model_patcher.ModelPatcher`` (no weight patches, no low-VRAM mode).

What is kept from ComfyUI because node code depends on it:
- the constructor ``ModelPatcher(model, load_device, offload_device, size=0,
  weight_inplace_update=False)``, which sets ``model.device = offload_device`` when the model
  has no ``device`` attribute (or it is ``None``) and adds bookkeeping attributes to the model;
- loading and unloading assign ``model.device`` as well, so a model whose ``device`` is a
  read-only property (a bare diffusers ``ModelMixin``) fails here exactly as in ComfyUI;
- ``model_size()`` is the byte size of ``model.state_dict()``, computed once;
- ``patch_model(device_to)`` moves the model to ``device_to``; ``unpatch_model(device_to)`` and
  ``detach()`` move it back (``detach`` to ``offload_device``).
"""

from __future__ import annotations

import copy
import uuid

import torch

import comfy.model_management


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.size = size
        self.model = model
        if not hasattr(self.model, "device") or self.model.device is None:
            self.model.device = offload_device
        self.patches = {}
        self.backup = {}
        self.object_patches = {}
        self.object_patches_backup = {}
        self.model_options = {"transformer_options": {}}
        self.model_size()
        self.load_device = load_device
        self.offload_device = offload_device
        self.weight_inplace_update = weight_inplace_update
        self.patches_uuid = uuid.uuid4()
        self.parent = None
        self.attachments = {}
        self.additional_models = {}
        for name, value in (
            ("model_loaded_weight_memory", 0),
            ("lowvram_patch_counter", 0),
            ("model_lowvram", False),
            ("current_weight_patches_uuid", None),
        ):
            if not hasattr(self.model, name):
                setattr(self.model, name, value)

    def model_size(self) -> int:
        if self.size > 0:
            return self.size
        self.size = comfy.model_management.module_size(self.model)
        return self.size

    def loaded_size(self) -> int:
        return self.model.model_loaded_weight_memory

    def lowvram_patch_counter(self) -> int:
        return self.model.lowvram_patch_counter

    def current_loaded_device(self):
        return self.model.device

    def model_dtype(self):
        if hasattr(self.model, "get_dtype"):
            return self.model.get_dtype()
        return None

    def clone(self) -> ModelPatcher:
        n = self.__class__(self.model, self.load_device, self.offload_device, self.size, self.weight_inplace_update)
        n.patches = {k: v[:] for k, v in self.patches.items()}
        n.patches_uuid = self.patches_uuid
        n.object_patches = self.object_patches.copy()
        n.model_options = copy.deepcopy(self.model_options)
        n.backup = self.backup
        n.object_patches_backup = self.object_patches_backup
        n.attachments = dict(self.attachments)
        n.additional_models = {k: [m.clone() for m in v] for k, v in self.additional_models.items()}
        n.parent = self
        return n

    def is_clone(self, other) -> bool:
        return hasattr(other, "model") and self.model is other.model

    def model_patches_to(self, device) -> None:
        pass

    def model_patches_models(self) -> list:
        return []

    def get_additional_models(self) -> list:
        return [m for models in self.additional_models.values() for m in models]

    def patch_model(self, device_to=None, lowvram_model_memory=0, load_weights=True, force_patch_weights=False):
        """Load the model onto ``device_to`` (the double always loads it whole)."""
        if load_weights and device_to is not None:
            self.model.to(device_to)
            self.model.device = device_to
            self.model.model_loaded_weight_memory = self.model_size()
            self.model.current_weight_patches_uuid = self.patches_uuid
        return self.model

    def unpatch_model(self, device_to=None, unpatch_weights=True) -> None:
        if unpatch_weights:
            self.model.current_weight_patches_uuid = None
            if device_to is not None:
                self.model.to(device_to)
                self.model.device = device_to
            self.model.model_loaded_weight_memory = 0

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False) -> int:
        before = self.model.model_loaded_weight_memory
        if before > 0 and self.model.device == device_to and not force_patch_weights:
            return 0
        self.patch_model(device_to, force_patch_weights=force_patch_weights)
        return self.model.model_loaded_weight_memory - before

    def partially_unload(self, device_to, memory_to_free=0) -> int:
        freed = self.model.model_loaded_weight_memory
        self.unpatch_model(device_to)
        return freed

    def detach(self, unpatch_all: bool = True):
        if unpatch_all:
            self.unpatch_model(self.offload_device, unpatch_weights=True)
        return self.model

    def model_state_dict(self, filter_prefix=None) -> dict[str, torch.Tensor]:
        sd = self.model.state_dict()
        if filter_prefix is None:
            return sd
        return {k: v for k, v in sd.items() if k.startswith(filter_prefix)}

    def cleanup(self) -> None:
        pass
