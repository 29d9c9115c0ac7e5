"""Test double of ``comfy_api.latest``: ``ComfyExtension``, ``io`` and ``ui``.

As in ComfyUI, ``io`` and ``ui`` are attributes (``from comfy_api.latest import io, ui``), not
importable submodules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from . import _io as io
from . import _ui as ui


class ComfyExtension(ABC):
    """What a V3 pack's ``comfy_entrypoint()`` returns."""

    async def on_load(self) -> None:  # noqa: B027 - optional hook, as in ComfyUI
        """Optional set-up hook (ComfyUI's loader does not call it at the commit in README.md)."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The node classes this extension registers."""


comfy_io = io

__all__ = ["ComfyExtension", "io", "comfy_io", "ui"]
