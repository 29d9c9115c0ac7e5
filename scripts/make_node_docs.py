"""Write docs/nodes.md from the nodes' own schemas (ids, inputs, defaults, ranges, tooltips, outputs).

The schemas are read through the ComfyUI test double in tests/comfy_double, whose /object_info
entries for our nodes the real-server tests compare with ComfyUI's; a test keeps the page current.

    python scripts/make_node_docs.py            # rewrite docs/nodes.md
    python scripts/make_node_docs.py --check    # exit 1 if docs/nodes.md is out of date
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "nodes.md"

HEADER = """# RSEdit nodes

Every node of the pack, with the inputs, defaults and tooltips its schema gives ComfyUI. All nodes
are in the **RSEdit/** menu; their ids (in brackets) are permanent, so saved workflows keep loading. Types in capitals
are ComfyUI's own (IMAGE `[B,H,W,3]` 0..1, MASK `[B,H,W]` 0..1, LATENT SD latents); `RSEDIT_*`
types carry a loaded model, an encoded instruction or an encoded source between our nodes.

This page is generated from the node schemas by `scripts/make_node_docs.py`; the README's *Nodes*
section explains how the nodes fit together and the example workflows show them in use.
"""


def _node_classes():
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    # File lists (Load GeoTIFF's) then describe what the server finds, not the pack's example inputs.
    os.environ["RSEDIT_NO_EXAMPLE_INPUTS"] = "1"
    from comfy_double import install_comfy_double

    install_comfy_double()
    from conftest import import_pack

    extension = asyncio.run(import_pack().comfy_entrypoint())
    return asyncio.run(extension.get_node_list())


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _range(kind, options: dict) -> str:
    if kind == "COMBO" or isinstance(kind, list):
        choices = options.get("options", kind if isinstance(kind, list) else [])
        return ", ".join(f"`{c}`" for c in choices) if choices else "the files or folders found on the server"
    parts = []
    if "min" in options:
        parts.append(f"min {options['min']}")
    if "max" in options:
        parts.append(f"max {options['max']}")
    if options.get("multiline"):
        parts.append("multiline")
    if options.get("control_after_generate"):
        parts.append("with a control-after-generate widget")
    return ", ".join(parts)


def render() -> str:
    lines = [HEADER]
    for cls in _node_classes():
        info = cls.GET_NODE_INFO_V1()
        lines += [f"## {info['display_name']} (`{info['name']}`)", "", info["description"], ""]
        lines += [f"Category: `{info['category']}`.", "", "| Input | Type | Default | Values | What it does |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                kind, options = spec[0], spec[1] if len(spec) > 1 else {}
                label = f"`{name}`" + (" (optional)" if section == "optional" else "")
                default = f"`{options['default']!r}`" if "default" in options else ""
                row = [label, f"`{kind}`", default, _range(kind, options), options.get("tooltip", "")]
                lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
        if info["output"]:
            lines += ["", "| Output | Type | What it is |", "| --- | --- | --- |"]
            for name, kind, tip in zip(info["output_name"], info["output"], info["output_tooltips"], strict=True):
                lines.append(f"| `{name}` | `{kind}` | {_cell(tip or '')} |")
        elif info["output_node"]:
            lines += ["", "An output node: no outputs; it writes files and shows what it wrote on the node."]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with docs/nodes.md instead of writing")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print("docs/nodes.md is out of date; run python scripts/make_node_docs.py")
            return 1
        return 0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
