"""Check UI-format workflows and convert them to API format, as ComfyUI's frontend does.

The server cannot convert: the frontend turns a UI graph into the ``/prompt`` graph by walking each
node's widget inputs in definition order (required, then optional) and taking the node's
``widgets_values`` positionally. Two widgets store one extra value that is not an input: an INT or
COMBO with ``control_after_generate`` (the "fixed"/"randomize"/... mode) and an image-upload COMBO
(Load Image's "image" upload button). Links override widgets of the same name. Definitions are
``/object_info`` entries: from the real server, from ``tests/data/comfyui_core_nodes.json`` (core
nodes) and from our schemas in the double.
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
# Node types that only exist in the frontend: notes are never sent; reroutes and primitives are
# rewired into their neighbours by the frontend.
NOTE_TYPES = ("Note", "MarkdownNote")
REWIRED_TYPES = ("Reroute", "PrimitiveNode")
# Core nodes the shipped workflows may use (their definitions are in comfyui_core_nodes.json).
CORE_TYPES = (
    "LoadImage",
    "SaveImage",
    "PreviewImage",
    "PreviewAny",
    "ImageScaleBy",
    "ImageCompositeMasked",
    "ImageStitch",
    "GrowMask",
)


def core_definitions() -> dict[str, dict]:
    data = json.loads((DATA / "comfyui_core_nodes.json").read_text())
    return {name: entry for name, entry in data.items() if not name.startswith("_")}


def _ordered_inputs(definition: dict) -> list[tuple[str, object, dict]]:
    """``(name, type, options)`` of every input, required then optional, in the server's order."""
    items = []
    for section in ("required", "optional"):
        specs = definition["input"].get(section, {})
        for name in definition.get("input_order", {}).get(section, list(specs)):
            spec = specs[name]
            items.append((name, spec[0], spec[1] if len(spec) > 1 else {}))
    return items


def _is_widget(kind, options: dict) -> bool:
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput")


def widget_inputs(definition: dict) -> list[tuple[str, object, dict]]:
    return [(n, k, o) for n, k, o in _ordered_inputs(definition) if _is_widget(k, o)]


def _extra_values(kind, options: dict) -> int:
    """How many stored values follow this widget's own value in ``widgets_values``."""
    extra = 1 if options.get("control_after_generate") else 0
    if options.get("image_upload"):
        extra += 1
    return extra


def widget_values(node: dict, definition: dict) -> dict[str, object]:
    """Map a UI node's ``widgets_values`` to its widget inputs (extra stored values checked and
    dropped). Raises ``ValueError`` naming the node when the count does not fit."""
    values = list(node.get("widgets_values") or [])
    mapped, i = {}, 0
    for name, kind, options in widget_inputs(definition):
        if i >= len(values):
            raise ValueError(f"node {node['id']} ({node['type']}): no stored value for widget '{name}'")
        mapped[name] = values[i]
        i += 1
        for extra in range(_extra_values(kind, options)):
            if i >= len(values):
                raise ValueError(f"node {node['id']} ({node['type']}): missing the extra value after '{name}'")
            stored = values[i]
            if options.get("control_after_generate") and extra == 0:
                if stored not in CONTROL_VALUES:
                    raise ValueError(f"node {node['id']}: '{name}' control value {stored!r} not in {CONTROL_VALUES}")
            elif stored != "image":
                raise ValueError(f"node {node['id']}: the upload value after '{name}' is {stored!r}, not 'image'")
            i += 1
    if i != len(values):
        raise ValueError(f"node {node['id']} ({node['type']}): {len(values) - i} widget value(s) left over")
    return mapped


def check_value(name: str, kind, options: dict, value, dynamic_ok: bool = False) -> str | None:
    """Why ``value`` does not fit the widget, or None. ``dynamic_ok`` skips the option list of
    combos whose options are files on the server."""
    if isinstance(kind, list) or kind == "COMBO":
        choices = kind if isinstance(kind, list) else options.get("options", [])
        if not isinstance(value, str):
            return f"{name}: {value!r} is not a string option"
        if not dynamic_ok and value not in choices:
            return f"{name}: {value!r} not in {choices}"
        return None
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name}: {value!r} is not an integer"
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name}: {value!r} is not a number"
    elif kind == "STRING":
        return None if isinstance(value, str) else f"{name}: {value!r} is not a string"
    elif kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}: {value!r} is not a boolean"
    if "min" in options and value < options["min"]:
        return f"{name}: {value} < min {options['min']}"
    if "max" in options and value > options["max"]:
        return f"{name}: {value} > max {options['max']}"
    return None


def structure_problems(workflow: dict) -> list[str]:
    """Schema-0.4 shape and internal consistency of a UI workflow (ids, links both ways)."""
    problems = []
    for key, kind in (("last_node_id", int), ("last_link_id", int), ("nodes", list), ("links", list)):
        if not isinstance(workflow.get(key), kind):
            problems.append(f"'{key}' missing or not {kind.__name__}")
    if workflow.get("version") != 0.4:
        problems.append(f"version {workflow.get('version')!r}, expected 0.4")
    if problems:
        return problems
    nodes = {}
    for node in workflow["nodes"]:
        for key in ("id", "type", "pos", "size", "flags", "order", "mode", "properties"):
            if key not in node:
                problems.append(f"node {node.get('id')}: no '{key}'")
        if node["id"] in nodes:
            problems.append(f"node id {node['id']} used twice")
        nodes[node["id"]] = node
    if nodes and max(nodes) > workflow["last_node_id"]:
        problems.append(f"last_node_id {workflow['last_node_id']} < node id {max(nodes)}")
    links = {}
    for link in workflow["links"]:
        link_id, origin, slot, target, target_slot, kind = link
        links[link_id] = link
        if origin not in nodes or target not in nodes:
            problems.append(f"link {link_id} joins missing nodes {origin} -> {target}")
            continue
        output = nodes[origin]["outputs"][slot]
        socket = nodes[target]["inputs"][target_slot]
        if link_id not in (output.get("links") or []):
            problems.append(f"link {link_id} not listed on node {origin}'s output {slot}")
        if socket.get("link") != link_id:
            problems.append(f"link {link_id} not on node {target}'s input {target_slot}")
        # A "*" socket (Preview Any) takes any type; the link keeps the origin's.
        if output["type"] != kind or socket["type"] not in (kind, "*"):
            problems.append(f"link {link_id}: {output['type']} -> {socket['type']} (link says {kind})")
    if links and max(links) > workflow["last_link_id"]:
        problems.append(f"last_link_id {workflow['last_link_id']} < link id {max(links)}")
    for node in nodes.values():
        for socket in node.get("inputs", []):
            if socket.get("link") is not None and socket["link"] not in links:
                problems.append(f"node {node['id']} input '{socket['name']}' names missing link {socket['link']}")
    return problems


def ui_to_api(workflow: dict, definitions: dict[str, dict]) -> dict:
    """The ``/prompt`` graph of a UI workflow. Muted nodes (mode 2) are dropped; bypassed nodes
    (mode 4) and frontend-only nodes (reroutes, primitives) need the frontend's rewiring, which
    this converter does not reproduce, so they are refused rather than silently dropped."""
    links = {link[0]: link for link in workflow["links"]}
    graph = {}
    for node in workflow["nodes"]:
        if node["type"] in REWIRED_TYPES or node.get("mode", 0) == 4:
            raise ValueError(f"node {node['id']} ({node['type']}, mode {node.get('mode', 0)}) needs frontend rewiring")
        if node["type"] in NOTE_TYPES or node.get("mode", 0) == 2:
            continue
        inputs = widget_values(node, definitions[node["type"]])
        for socket in node.get("inputs", []):
            if socket.get("link") is not None:
                _, origin, slot, *_ = links[socket["link"]]
                inputs[socket["name"]] = [str(origin), slot]
        graph[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return graph
