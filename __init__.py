"""RSEdit for ComfyUI: text-guided editing of satellite and aerial images.

ComfyUI loads this folder as a package and calls :func:`comfy_entrypoint` (node API V3). Nothing
heavy is imported here, so the package also imports where ComfyUI is absent.
"""


async def comfy_entrypoint():
    from .nodes.extension import RSEditExtension

    return RSEditExtension()
