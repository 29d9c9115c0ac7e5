"""Packaging promises: the core imports without ComfyUI; the pack imports without ComfyUI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_core_imports_without_comfyui():
    result = _run(
        "import sys, rsedit_core.edit, rsedit_core.cli, rsedit_core.longclip, rsedit_core.preview\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths')]\n"
        "assert not bad, bad\n"
        "print('ok')"
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_pack_init_imports_without_comfyui():
    result = _run(
        "import importlib.util, sys, asyncio\n"
        f"spec = importlib.util.spec_from_file_location('pack', {str(ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pack'] = m; spec.loader.exec_module(m)\n"
        "assert asyncio.iscoroutinefunction(m.comfy_entrypoint)\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')"
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_requirements_never_list_torch_and_match_pyproject():
    requirements = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert requirements == project["dependencies"]
    assert not any(
        r.split(">")[0].split("=")[0].strip() in ("torch", "torchvision", "torchaudio") for r in requirements
    )
    assert "comfyui" not in project["name"].lower() and project["license"] == {"file": "LICENSE"}
