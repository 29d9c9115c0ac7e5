"""Test double of ``comfy.model_management``, by default as it behaves under ``main.py --cpu``.

Mirrors the device and dtype helpers (each role's load and offload device, ``vae_dtype``,
``text_encoder_dtype``), the interrupt flag and the loaded-model list. ``load_models_gpu`` moves
each ``ModelPatcher`` to its ``load_device`` through the patcher (as ComfyUI does), keeps it in
``current_loaded_models`` and also appends every call's argument list to ``load_calls`` so tests
can assert what a node asked to load; ``free_memory`` unloads through ``LoadedModel.model_unload``
and drops the entries from the list. ``soft_empty_cache_calls`` counts cache flushes.

ComfyUI decides ``cpu_state`` and ``vram_state`` from the flags once, at import.
``configure_from_args(gpu_device=...)`` does that again after a test changed ``comfy.cli_args.args``;
``gpu_device`` stands in for the GPU on a machine without one (``"meta"`` keeps module moves
cheap), and the stand-in behaves as a recent NVIDIA GPU (fp16 and bf16 usable).
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


cpu_state = CPUState.CPU
vram_state = VRAMState.DISABLED
DISABLE_SMART_MEMORY = False
#: The device ``get_torch_device()`` answers in GPU state; ``None`` means the current CUDA device.
_gpu_stand_in: torch.device | None = None


def configure_from_args(gpu_device: torch.device | str | None = None) -> tuple[CPUState, VRAMState]:
    """Set ``cpu_state``, ``vram_state`` and ``DISABLE_SMART_MEMORY`` from ``args`` as ComfyUI does
    at import: ``--cpu`` (or no GPU) -> CPU and VRAM disabled; ``--lowvram`` -> LOW_VRAM,
    ``--novram`` -> NO_VRAM, ``--highvram``/``--gpu-only`` -> HIGH_VRAM, else NORMAL_VRAM.

    ``gpu_device`` pretends that a GPU is present and is that device."""
    global cpu_state, vram_state, DISABLE_SMART_MEMORY, _gpu_stand_in
    _gpu_stand_in = None if gpu_device is None else torch.device(gpu_device)
    has_gpu = _gpu_stand_in is not None or torch.cuda.is_available()
    cpu_state = CPUState.CPU if args.cpu or not has_gpu else CPUState.GPU
    if args.lowvram:
        vram_state = VRAMState.LOW_VRAM
    elif args.novram:
        vram_state = VRAMState.NO_VRAM
    elif args.highvram or args.gpu_only:
        vram_state = VRAMState.HIGH_VRAM
    else:
        vram_state = VRAMState.NORMAL_VRAM
    if cpu_state != CPUState.GPU:
        vram_state = VRAMState.DISABLED
    DISABLE_SMART_MEMORY = args.disable_smart_memory
    return cpu_state, vram_state


configure_from_args()

try:
    OOM_EXCEPTION = torch.cuda.OutOfMemoryError
except AttributeError:  # very old torch builds
    OOM_EXCEPTION = Exception


# --- devices and dtypes -------------------------------------------------------------------


def get_torch_device() -> torch.device:
    if cpu_state == CPUState.CPU:
        return torch.device("cpu")
    if cpu_state == CPUState.MPS:
        return torch.device("mps")
    if _gpu_stand_in is not None:
        return _gpu_stand_in
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


def text_encoder_initial_device(load_device, offload_device, model_size: int = 0) -> torch.device:
    """Where a text encoder is first put: the offload device unless it is over 1 GiB and fits."""
    if load_device == offload_device or model_size <= 1024 * 1024 * 1024:
        return offload_device
    if is_device_mps(load_device):
        return load_device
    free_load, free_offload = get_free_memory(load_device), get_free_memory(offload_device)
    return load_device if free_load > free_offload * 0.5 and model_size * 1.2 < free_load else offload_device


def text_encoder_dtype(device=None) -> torch.dtype:
    """The text-encoder precision flags, else fp16 (ComfyUI's default, on any device)."""
    for flag, dtype in (
        ("fp8_e4m3fn_text_enc", torch.float8_e4m3fn),
        ("fp8_e5m2_text_enc", torch.float8_e5m2),
        ("fp16_text_enc", torch.float16),
        ("bf16_text_enc", torch.bfloat16),
        ("fp32_text_enc", torch.float32),
    ):
        if getattr(args, flag, False):
            return dtype
    return torch.float16


def should_use_fp16(device=None, model_params=0, prioritize_performance=True, manual_cast=False) -> bool:
    if device is not None and is_device_cpu(device):
        return False
    if args.force_fp16:
        return True
    if args.force_fp32 or cpu_mode():
        return False
    return cpu_state == CPUState.GPU


def should_use_bf16(device=None, model_params=0, prioritize_performance=True, manual_cast=False) -> bool:
    if device is not None and is_device_cpu(device):
        return False
    if args.force_fp32 or cpu_mode():
        return False
    if _gpu_stand_in is not None:
        return True
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
    """Unload every loaded model on ``device`` whose entry is not in ``keep_loaded`` (``LoadedModel``
    entries, compared by patcher) and drop it from ``current_loaded_models``; returns the entries.

    ComfyUI stops once ``memory_required`` bytes are free; the double ignores sizes, which is what
    ComfyUI does for a ``memory_required`` beyond the device's memory (``1e30``)."""
    cleanup_models_gc()
    unloaded = []
    for entry in list(current_loaded_models):
        if entry.device == device and entry not in keep_loaded:
            entry.currently_used = False
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
