"""The V3 extension object ComfyUI asks ``comfy_entrypoint`` for."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .comfy_models import register_model_folder
from .nodes_edit import NODES


class RSEditExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_model_folder()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
