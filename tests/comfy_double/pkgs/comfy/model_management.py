"""Test double of ``comfy.model_management`` as it behaves under ``main.py --cpu``.

Mirrors the device helpers, the interrupt flag and the loaded-model list. ``load_models_gpu``
moves each ``ModelPatcher`` to its ``load_device`` through the patcher (as ComfyUI does), keeps
it in ``current_loaded_models`` and also appends every call's argument list to ``load_calls``
so tests can assert what a node asked to load. ``soft_empty_cache_calls`` counts cache flushes.
"""

from __future__ import annotations

import threading
import weakref
from enum import Enum

import torch

from comfy.cli_args import args


class VRAMState(Enum):
    DISABLED = 0
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


class CPUState(Enum):
    GPU = 0
    CPU = 1
    MPS = 2


cpu_state = CPUState.CPU if args.cpu or not torch.cuda.is_available() else CPUState.GPU
vram_state = VRAMState.DISABLED if cpu_state != CPUState.GPU else VRAMState.NORMAL_VRAM
DISABLE_SMART_MEMORY = args.disable_smart_memory

try:
    OOM_EXCEPTION = torch.cuda.OutOfMemoryError
except AttributeError:  # very old torch builds
    OOM_EXCEPTION = Exception


# --- devices and dtypes -------------------------------------------------------------------


def get_torch_device() -> torch.device:
    if cpu_state == CPUState.CPU:
        return torch.device("cpu")
    return torch.device(torch.cuda.current_device())


def cpu_mode() -> bool:
    return cpu_state == CPUState.CPU


def mps_mode() -> bool:
    return cpu_state == CPUState.MPS


def is_device_type(device, type_name: str) -> bool:
    return getattr(device, "type", None) == type_name


def is_device_cpu(device) -> bool:
    return is_device_type(device, "cpu")


def is_device_mps(device) -> bool:
    return is_device_type(device, "mps")


def is_device_cuda(device) -> bool:
    return is_device_type(device, "cuda")


def unet_offload_device() -> torch.device:
    return get_torch_device() if vram_state == VRAMState.HIGH_VRAM else torch.device("cpu")


def unet_inital_load_device(parameters: int, dtype: torch.dtype) -> torch.device:
    # ComfyUI's spelling ("inital") is kept so that callers written against it work.
    if vram_state in (VRAMState.HIGH_VRAM, VRAMState.SHARED):
        return get_torch_device()
    return torch.device("cpu") if cpu_mode() else get_torch_device()


def intermediate_device() -> torch.device:
    return get_torch_device() if args.gpu_only else torch.device("cpu")


def vae_device() -> torch.device:
    return torch.device("cpu") if args.cpu_vae else get_torch_device()


def vae_offload_device() -> torch.device:
    return get_torch_device() if args.gpu_only else torch.device("cpu")


def text_encoder_device() -> torch.device:
    if args.gpu_only:
        return get_torch_device()
    if vram_state in (VRAMState.HIGH_VRAM, VRAMState.NORMAL_VRAM) and should_use_fp16(prioritize_performance=False):
        return get_torch_device()
    return torch.device("cpu")


def text_encoder_offload_device() -> torch.device:
    return get_torch_device() if args.gpu_only else torch.device("cpu")


def should_use_fp16(device=None, model_params=0, prioritize_performance=True, manual_cast=False) -> bool:
    if device is not None and is_device_cpu(device):
        return False
    if args.force_fp16:
        return True
    if args.force_fp32 or cpu_mode():
        return False
    return torch.cuda.is_available()


def should_use_bf16(device=None, model_params=0, prioritize_performance=True, manual_cast=False) -> bool:
    if device is not None and is_device_cpu(device):
        return False
    if args.force_fp32 or cpu_mode():
        return False
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def unet_dtype(
    device=None, model_params=0, supported_dtypes=(torch.float16, torch.bfloat16, torch.float32), weight_dtype=None
):
    if args.fp32_unet:
        return torch.float32
    if args.bf16_unet:
        return torch.bfloat16
    if args.fp16_unet:
        return torch.float16
    for dt in supported_dtypes:
        if dt == torch.float16 and should_use_fp16(device=device, model_params=model_params):
            return dt
        if dt == torch.bfloat16 and should_use_bf16(device, model_params=model_params):
            return dt
    return torch.float32


def vae_dtype(device=None, allowed_dtypes=()):
    if args.fp16_vae:
        return torch.float16
    if args.bf16_vae:
        return torch.bfloat16
    if args.fp32_vae:
        return torch.float32
    for dt in allowed_dtypes:
        if dt == torch.float16 and should_use_fp16(device):
            return dt
        if dt == torch.bfloat16 and should_use_bf16(device):
            return dt
    return torch.float32


# --- memory -------------------------------------------------------------------------------


def module_size(module: torch.nn.Module) -> int:
    """Bytes held by ``module.state_dict()`` (parameters and buffers)."""
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


def get_total_memory(dev=None, torch_total_too=False):
    import psutil

    total = psutil.virtual_memory().total
    return (total, total) if torch_total_too else total


def get_free_memory(dev=None, torch_free_too=False):
    import psutil

    free = psutil.virtual_memory().available
    return (free, free) if torch_free_too else free


soft_empty_cache_calls = 0


def soft_empty_cache(force: bool = False) -> None:
    global soft_empty_cache_calls
    soft_empty_cache_calls += 1
    if torch.cuda.is_available() and not cpu_mode():
        torch.cuda.empty_cache()


class LoadedModel:
    """One entry of ``current_loaded_models``: a weak reference to a loaded ``ModelPatcher``."""

    def __init__(self, model) -> None:
        self._model = weakref.ref(model)
        self.device = model.load_device
        self.currently_used = True

    @property
    def model(self):
        return self._model()

    def model_memory(self) -> int:
        return self.model.model_size()

    def model_load(self, force_patch_weights: bool = False):
        self.model.partially_load(self.device, 1e32, force_patch_weights=force_patch_weights)
        return self.model.model

    def model_unload(self, memory_to_free=None, unpatch_weights: bool = True) -> bool:
        self.model.detach(unpatch_weights)
        return True

    def __eq__(self, other) -> bool:
        return self.model is other.model


current_loaded_models: list[LoadedModel] = []
load_calls: list[list] = []


def cleanup_models_gc() -> None:
    current_loaded_models[:] = [m for m in current_loaded_models if m.model is not None]


def load_models_gpu(
    models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False
) -> None:
    """Load each patcher (and the models its patches need) onto its ``load_device``."""
    load_calls.append(list(models))
    cleanup_models_gc()
    wanted = []
    for m in models:
        for x in [m, *m.model_patches_models()]:
            if x not in wanted:
                wanted.append(x)
    to_load = []
    for patcher in wanted:
        entry = LoadedModel(patcher)
        if entry in current_loaded_models:
            existing = current_loaded_models[current_loaded_models.index(entry)]
            existing.currently_used = True
            to_load.append(existing)
        else:
            to_load.append(entry)
    for entry in to_load:
        for i in reversed(range(len(current_loaded_models))):
            other = current_loaded_models[i]
            if other is not entry and entry.model.is_clone(other.model):
                current_loaded_models.pop(i)
                other.model.detach(unpatch_all=False)
    for entry in to_load:
        entry.model_load(force_patch_weights=force_patch_weights)
        if entry in current_loaded_models:
            current_loaded_models.remove(entry)
        current_loaded_models.insert(0, entry)


def load_model_gpu(model) -> None:
    load_models_gpu([model])


def loaded_models(only_currently_used: bool = False) -> list:
    return [m.model for m in current_loaded_models if m.currently_used or not only_currently_used]


def free_memory(memory_required, device, keep_loaded=()) -> list[LoadedModel]:
    """Unload every loaded model on ``device`` not in ``keep_loaded`` (the double ignores sizes)."""
    cleanup_models_gc()
    unloaded = []
    for entry in list(current_loaded_models):
        if entry.device == device and entry not in keep_loaded:
            entry.model_unload()
            current_loaded_models.remove(entry)
            unloaded.append(entry)
    if unloaded:
        soft_empty_cache()
    return unloaded


def unload_all_models() -> None:
    free_memory(1e30, get_torch_device())


# --- interruption -------------------------------------------------------------------------


class InterruptProcessingException(Exception):
    pass


interrupt_processing_mutex = threading.RLock()
interrupt_processing = False


def interrupt_current_processing(value: bool = True) -> None:
    global interrupt_processing
    with interrupt_processing_mutex:
        interrupt_processing = value


def processing_interrupted() -> bool:
    with interrupt_processing_mutex:
        return interrupt_processing


def throw_exception_if_processing_interrupted() -> None:
    """Raise ``InterruptProcessingException`` once if an interrupt is pending, clearing the flag."""
    global interrupt_processing
    with interrupt_processing_mutex:
        if interrupt_processing:
            interrupt_processing = False
            raise InterruptProcessingException()
