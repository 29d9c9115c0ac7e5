"""Test double of ComfyUI's ``comfy`` package (only the modules RSEdit's nodes use)."""
