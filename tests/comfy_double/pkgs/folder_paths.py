"""Test double of ComfyUI's ``folder_paths`` module.

Same registry and look-up rules as ComfyUI: ``folder_names_and_paths`` maps a folder name to
``([paths], extensions)``; ``add_model_folder_path`` appends a path (or puts it first with
``is_default=True``) and creates an unknown name with an empty extension set (every file
matches); file names are paths relative to a registered folder, sorted, found recursively.
Differences: the base directory is a fresh temporary folder (``COMFY_DOUBLE_BASE`` overrides
it) and file lists are never cached.
"""

from __future__ import annotations

import os
import tempfile

supported_pt_extensions: set[str] = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

base_path = os.path.abspath(os.environ.get("COMFY_DOUBLE_BASE") or tempfile.mkdtemp(prefix="comfy_double_"))
models_dir = os.path.join(base_path, "models")

folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}


def _default_folders() -> dict[str, tuple[list[str], set[str]]]:
    def m(*names: str) -> list[str]:
        return [os.path.join(models_dir, n) for n in names]

    pt = supported_pt_extensions
    return {
        "checkpoints": (m("checkpoints"), set(pt)),
        "configs": (m("configs"), {".yaml"}),
        "loras": (m("loras"), set(pt)),
        "vae": (m("vae"), set(pt)),
        "text_encoders": (m("text_encoders", "clip"), set(pt)),
        "diffusion_models": (m("unet", "diffusion_models"), set(pt)),
        "clip_vision": (m("clip_vision"), set(pt)),
        "embeddings": (m("embeddings"), set(pt)),
        "diffusers": (m("diffusers"), {"folder"}),
        "vae_approx": (m("vae_approx"), set(pt)),
        "controlnet": (m("controlnet", "t2i_adapter"), set(pt)),
        "upscale_models": (m("upscale_models"), set(pt)),
        "custom_nodes": ([os.path.join(base_path, "custom_nodes")], set()),
        "classifiers": (m("classifiers"), {""}),
        "model_patches": (m("model_patches"), set(pt)),
    }


output_directory = os.path.join(base_path, "output")
temp_directory = os.path.join(base_path, "temp")
input_directory = os.path.join(base_path, "input")
user_directory = os.path.join(base_path, "user")


def _double_reset() -> None:
    """Double only: restore the default registry and directories (ComfyUI has no such call)."""
    global output_directory, temp_directory, input_directory, user_directory
    folder_names_and_paths.clear()
    folder_names_and_paths.update(_default_folders())
    output_directory = os.path.join(base_path, "output")
    temp_directory = os.path.join(base_path, "temp")
    input_directory = os.path.join(base_path, "input")
    user_directory = os.path.join(base_path, "user")
    os.makedirs(input_directory, exist_ok=True)


_double_reset()


def map_legacy(folder_name: str) -> str:
    return {"unet": "diffusion_models", "clip": "text_encoders"}.get(folder_name, folder_name)


def get_output_directory() -> str:
    return output_directory


def get_temp_directory() -> str:
    return temp_directory


def get_input_directory() -> str:
    return input_directory


def get_user_directory() -> str:
    return user_directory


def set_output_directory(output_dir: str) -> None:
    global output_directory
    output_directory = output_dir


def set_temp_directory(temp_dir: str) -> None:
    global temp_directory
    temp_directory = temp_dir


def set_input_directory(input_dir: str) -> None:
    global input_directory
    input_directory = input_dir


def get_directory_by_type(type_name: str) -> str | None:
    return {"output": output_directory, "temp": temp_directory, "input": input_directory}.get(type_name)


def annotated_filepath(name: str) -> tuple[str, str | None]:
    for suffix, directory in (("[output]", output_directory), ("[input]", input_directory), ("[temp]", temp_directory)):
        if name.endswith(suffix):
            return name[: -len(suffix) - 1], directory
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base_dir = annotated_filepath(name)
    return os.path.join(base_dir or default_dir or input_directory, name)


def exists_annotated_filepath(name: str) -> bool:
    name, base_dir = annotated_filepath(name)
    return os.path.exists(os.path.join(base_dir or input_directory, name))


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())
        return
    paths = folder_names_and_paths[folder_name][0]
    if full_folder_path in paths:
        if is_default and paths[0] != full_folder_path:
            paths.remove(full_folder_path)
            paths.insert(0, full_folder_path)
    elif is_default:
        paths.insert(0, full_folder_path)
    else:
        paths.append(full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    """Registered paths for ``folder_name`` (a copy); ``KeyError`` for an unknown name, as in ComfyUI."""
    return folder_names_and_paths[map_legacy(folder_name)][0][:]


def recursive_search(directory: str, excluded_dir_names: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
    if not os.path.isdir(directory):
        return [], {}
    excluded = set(excluded_dir_names or [])
    files: list[str] = []
    dirs = {directory: os.path.getmtime(directory)}
    for dirpath, subdirs, filenames in os.walk(directory, followlinks=True, topdown=True):
        subdirs[:] = [d for d in subdirs if d not in excluded]
        files.extend(os.path.relpath(os.path.join(dirpath, f), directory) for f in filenames)
        for d in subdirs:
            dirs[os.path.join(dirpath, d)] = os.path.getmtime(os.path.join(dirpath, d))
    return files, dirs


def filter_files_extensions(files, extensions) -> list[str]:
    return sorted(f for f in files if len(extensions) == 0 or os.path.splitext(f)[-1].lower() in extensions)


def get_filename_list(folder_name: str) -> list[str]:
    """Sorted relative paths of the files under every path registered for ``folder_name``."""
    folder_name = map_legacy(folder_name)
    paths, extensions = folder_names_and_paths[folder_name]
    found: set[str] = set()
    for path in paths:
        files, _ = recursive_search(path, excluded_dir_names=[".git"])
        found.update(filter_files_extensions(files, extensions))
    return sorted(found)


def get_full_path(folder_name: str, filename: str) -> str | None:
    """Absolute path of ``filename`` in the first registered folder that has it, else ``None``."""
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for path in folder_names_and_paths[folder_name][0]:
        full_path = os.path.join(path, filename)
        if os.path.isfile(full_path):
            return full_path
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    full_path = get_full_path(folder_name, filename)
    if full_path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return full_path
