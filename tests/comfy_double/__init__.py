"""A small test double of the ComfyUI modules RSEdit's nodes import (see README.md).

Call ``install_comfy_double()`` once before importing node modules; then ``comfy_api.latest``,
``comfy.utils``, ``comfy.model_management``, ``comfy.model_patcher``, ``comfy.cli_args`` and
``folder_paths`` resolve to the double, and ``comfy_double.runner`` runs nodes and graphs.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

PKGS_DIR = Path(__file__).resolve().parent / "pkgs"
_TOP_LEVEL = ("comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths")


def _is_comfy_module(name: str) -> bool:
    return name in _TOP_LEVEL or name.startswith(tuple(f"{top}." for top in _TOP_LEVEL))


def _from_double(module) -> bool:
    origin = getattr(module, "__file__", None)
    return origin is not None and Path(origin).resolve().is_relative_to(PKGS_DIR)


def install_comfy_double(monkeypatch=None) -> Path:
    """Make the ComfyUI modules importable from the double, and install the server's progress hook.

    Removes any real ComfyUI modules already imported, puts ``pkgs/`` first on ``sys.path`` and
    sets ``comfy.utils``'s global progress hook to the one the server uses (it raises a pending
    interrupt). With a pytest ``monkeypatch`` every change is undone at teardown (modules imported
    meanwhile stay cached); without one the double stays for the whole session. Idempotent.
    """
    for name, module in list(sys.modules.items()):
        if _is_comfy_module(name) and not _from_double(module):
            if monkeypatch is not None:
                monkeypatch.delitem(sys.modules, name)
            else:
                del sys.modules[name]
    if str(PKGS_DIR) not in sys.path:
        if monkeypatch is not None:
            monkeypatch.syspath_prepend(str(PKGS_DIR))
        else:
            sys.path.insert(0, str(PKGS_DIR))
            importlib.invalidate_caches()

    import comfy.utils

    from . import runner

    if monkeypatch is not None:
        monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", runner.server_progress_hook)
    else:
        comfy.utils.set_progress_bar_global_hook(runner.server_progress_hook)
    return PKGS_DIR


def reset_comfy_double() -> None:
    """Forget state left by a previous test: command-line flags and the device state ComfyUI derives
    from them, interrupt flag, loaded models, registered folders, progress."""
    import comfy.cli_args
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths

    from . import runner

    comfy.cli_args._double_reset()
    mm.configure_from_args()
    mm.interrupt_current_processing(False)
    mm.current_loaded_models.clear()
    mm.load_calls.clear()
    mm.soft_empty_cache_calls = 0
    folder_paths._double_reset()
    runner.progress_events.clear()
    comfy.utils.set_progress_bar_global_hook(runner.server_progress_hook)
