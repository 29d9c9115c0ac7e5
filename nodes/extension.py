"""The V3 extension object ComfyUI asks ``comfy_entrypoint`` for."""

from __future__ import annotations

import folder_paths
from comfy_api.latest import ComfyExtension, io

from .comfy_models import register_model_folder
from .example_inputs import install_example_inputs
from .nodes_damage import NODES as DAMAGE_NODES
from .nodes_damage import register_damage_folder
from .nodes_edit import NODES as EDIT_NODES
from .nodes_geo import NODES as GEO_NODES
from .nodes_instructions import NODES as INSTRUCTION_NODES


class RSEditExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # Registered here: ComfyUI 0.3.6x never calls on_load, and the loader's schema lists the folder.
        register_model_folder()
        register_damage_folder()
        install_example_inputs(folder_paths.get_input_directory())
        return [*EDIT_NODES, *GEO_NODES, *DAMAGE_NODES, *INSTRUCTION_NODES]
