"""Scheduler choice: the model folder's own by default, or one of the common diffusers samplers.

Each run gets a fresh scheduler built from the folder's noise schedule: diffusers schedulers
keep per-run state (step index, multistep history), so sharing one across runs would leak it.
"""

from __future__ import annotations

from .errors import InputError

DEFAULT = "default"
# name -> (diffusers class, config overrides)
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
SCHEDULER_NAMES = (DEFAULT, *SCHEDULERS)
# The folder's own scheduler is instantiated only if diffusers ships the class it names.
_ALLOWED_CLASSES = {cls for cls, _ in SCHEDULERS.values()} | {
    "DDPMScheduler",
    "LMSDiscreteScheduler",
    "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "DPMSolverSinglestepScheduler",
    "DEISMultistepScheduler",
    "LCMScheduler",
}


def make_scheduler(name: str, folder_config: dict):
    """A new scheduler instance: ``name`` from :data:`SCHEDULER_NAMES`, noise schedule from the folder."""
    import diffusers

    if name == DEFAULT:
        class_name, overrides = folder_config.get("_class_name", "EulerDiscreteScheduler"), {}
        if class_name not in _ALLOWED_CLASSES:
            raise InputError(
                f"The model folder asks for scheduler {class_name!r}, which RSEdit does not run. "
                f"Pick one of: {', '.join(SCHEDULERS)}."
            )
    elif name in SCHEDULERS:
        class_name, overrides = SCHEDULERS[name]
    else:
        raise InputError(f"Unknown scheduler {name!r}; choose one of {', '.join(SCHEDULER_NAMES)}.")
    cls = getattr(diffusers, class_name)
    return cls.from_config({**folder_config, **overrides})
