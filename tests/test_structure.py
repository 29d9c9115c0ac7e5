"""Structural promises: one home per backbone, no import cycles, a light CLI and public API."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rsedit_core"
# Comparing a value with a backbone's registry name: `== "unet"`, `"dit" !=`, `in ("unet", "dit")`.
NAME_COMPARISON = re.compile(
    r"""(==|!=)\s*["'](unet|dit)["']"""  # == "unet"
    r"""|["'](unet|dit)["']\s*(==|!=)"""  # "dit" !=
    r"""|in\s*\(\s*["'](unet|dit)["']"""  # in ("unet", "dit")
)


def _python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts]


def test_no_backbone_name_comparisons_outside_the_backbones_package():
    offenders = []
    for path in _python_files("rsedit_core", "nodes", "training", "scripts", "bench"):
        if PACKAGE / "backbones" in path.parents:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if NAME_COMPARISON.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "ask the backbone object instead:\n" + "\n".join(offenders)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path, name: str) -> set[str]:
    """Every rsedit_core module ``path`` imports at run time, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c.startswith("rsedit_core"))
    return found


def test_no_import_cycles_in_the_library():
    modules = {_module_name(p): p for p in _python_files("rsedit_core")}
    graph = {name: {m for m in _imports(path, name) if m in modules and m != name} for name, path in modules.items()}
    # A package's __init__ re-exporting its submodules is not a cycle of concerns; drop child -> parent edges.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not name.startswith(f"{t}.")}
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for target in graph[node]:
            if target in stack:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in done:
                visit(target, [*stack, target], done)
        done.add(node)

    done: set[str] = set()
    for name in graph:
        if name not in done:
            visit(name, [name], done)
    assert not cycles, "\n".join(sorted(set(cycles)))


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_cli_help_and_public_api_import_no_torch():
    out = _run(
        "import sys, contextlib, io\n"
        "import rsedit_core\n"
        "from rsedit_core.cli import build_parser\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    build_parser().parse_args(['--help'])\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'numpy', 'PIL') if m in sys.modules)\n"
        "print(heavy)"
    )
    assert out == "[]"


def test_public_api_names_resolve():
    out = _run(
        "import rsedit_core\n"
        "missing = [n for n in rsedit_core.__all__ if not hasattr(rsedit_core, n)]\n"
        "from rsedit_core import load_editor, edit_images, EditSettings, EditorModel, BACKBONES\n"
        "print(missing, sorted(BACKBONES), EditSettings().steps)"
    )
    assert out == "[] ['dit', 'unet'] 50"


def test_python_m_rsedit_core_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "rsedit_core", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "usage: rsedit" in result.stdout


def test_help_texts_show_no_placeholder_defaults():
    from rsedit_core.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    for name, command in commands.items():
        text = command.format_help()
        assert "(default: None)" not in text, name
    edit_help = commands["edit"].format_help()
    assert "7.5 for U-Net editors, 4.5 for PixArt DiT editors" in " ".join(edit_help.split())


def test_version_is_declared_once_in_step():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _run("import rsedit_core; print(rsedit_core.__version__)") == project["version"]


def test_tests_never_read_the_shared_folder():
    pattern = re.compile(r"""\.\.["']?\s*/\s*["']?shared|["']shared["']""")
    offenders = [str(p.relative_to(ROOT)) for p in _python_files("tests") if pattern.search(p.read_text())]
    assert not offenders, offenders


def test_tests_mirror_the_repository_layout():
    """tests/rsedit_core/damage/test_x.py tests rsedit_core/damage/, and so on; tests about the repo
    as a whole (structure, packaging, the ComfyUI double) sit at the top. Basenames stay unique, as
    pytest's default import mode needs for folders without __init__.py."""
    tests = ROOT / "tests"
    modules = sorted(tests.rglob("test_*.py"))
    folders = {p.parent.relative_to(tests) for p in modules} - {Path(".")}
    assert all((ROOT / folder).is_dir() for folder in folders), [str(f) for f in folders if not (ROOT / f).is_dir()]
    names = [p.name for p in modules]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    at_top = {p.name for p in modules if p.parent == tests}
    assert at_top <= {"test_structure.py", "test_package.py", "test_comfy_double.py"}, at_top
