"""ComfyUI nodes for RSEdit: the only package that imports ComfyUI."""
