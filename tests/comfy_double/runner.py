"""Run V3 nodes and API-format graphs on the ComfyUI double as ComfyUI's executor does.

Validation follows ``execution.validate_prompt``/``validate_inputs``:
- a required input that is absent is an error; optional ones are simply not passed, and
  defaults are *not* filled in (the frontend writes every widget value into the graph);
- constants for INT, FLOAT, STRING and BOOLEAN inputs are converted with ``int()``, ``float()``,
  ``str()`` and ``bool()`` (so ``"7"`` -> 7 and ``3.9`` -> 3) and then checked against
  ``min``/``max``; the converted values are what ``execute`` receives;
- a link's source output type must match the input type (``"*"`` and comma unions as in ComfyUI);
- a V1-style list of choices is checked, but a V3 ``io.Combo`` input (type ``"COMBO"``) is
  **not**: the real server accepts any value there (seen on the commit in README.md);
- a node's own ``validate_inputs`` is called with the inputs it names (links arrive as
  ``None``), and those inputs skip the min/max/choice checks.
A failure raises ``PromptValidationError`` carrying the ``error`` and ``node_errors`` that
``POST /prompt`` answers with HTTP 400.

Execution follows ``execution.execute``: the interrupt flag is cleared when a run starts and
checked before each node call; everything runs under ``torch.inference_mode()``; each value
reaches ``execute`` through ComfyUI's list mapping (one call per item, the last item repeated);
``execute`` runs on a locked clone of the class with ``cls.hidden`` filled in; results and
``ui`` are merged as ComfyUI merges them. Not reproduced: caching between runs, lazy inputs,
node expansion, execution blockers, V1 nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import comfy.model_management as model_management
import torch
from comfy_api.latest._io import ComfyNode, Hidden, NodeOutput, _first_real_override

# --- progress hook (what main.py installs in the server) ----------------------------------


@dataclass(frozen=True)
class ProgressEvent:
    node_id: str | None
    value: int
    total: int
    preview: Any


progress_events: list[ProgressEvent] = []
_current_node: contextvars.ContextVar[str | None] = contextvars.ContextVar("comfy_double_node", default=None)
_interrupt_after: int | None = None


def server_progress_hook(value, total, preview_image, prompt_id=None, node_id=None) -> None:
    """The server's ``PROGRESS_BAR_HOOK``: raise a pending interrupt, then report progress."""
    model_management.throw_exception_if_processing_interrupted()
    progress_events.append(ProgressEvent(node_id or _current_node.get(), value, total, preview_image))
    if _interrupt_after is not None and len(progress_events) >= _interrupt_after:
        model_management.interrupt_current_processing(True)


@contextlib.contextmanager
def interrupt_after(n_updates: int):
    """Act like a user pressing Cancel once ``n_updates`` progress updates have been reported.

    The next interrupt check (the next ``ProgressBar`` update or the next node) raises
    ``comfy.model_management.InterruptProcessingException``. ``0`` cancels before the first node.
    """
    global _interrupt_after
    previous, _interrupt_after = _interrupt_after, n_updates
    try:
        yield
    finally:
        _interrupt_after = previous


def _start_run() -> None:
    progress_events.clear()
    model_management.interrupt_current_processing(_interrupt_after == 0)


# --- errors and results -------------------------------------------------------------------


class PromptValidationError(Exception):
    """ComfyUI's HTTP 400 answer to ``POST /prompt``: ``error`` and per-node ``node_errors``."""

    def __init__(self, error: dict, node_errors: dict | None = None) -> None:
        self.error = error
        self.node_errors = node_errors or {}
        lines = [f"{error['message']}: {error['details']}"]
        for node_id, entry in self.node_errors.items():
            for e in entry["errors"]:
                lines.append(f"  node {node_id} ({entry['class_type']}): {e['message']}: {e['details']}")
        super().__init__("\n".join(lines))

    def as_response(self) -> dict:
        return {"error": self.error, "node_errors": self.node_errors}


class NodeExecutionError(Exception):
    """A node raised during ``run_api_graph``; ``message`` is the history's ``execution_error``.

    The original exception is ``__cause__``.
    """

    def __init__(self, message: dict) -> None:
        self.message = message
        self.node_id = message["node_id"]
        self.node_type = message["node_type"]
        self.exception_message = message["exception_message"]
        super().__init__(f"node {self.node_id} ({self.node_type}): {self.exception_message.rstrip()}")


@dataclass
class GraphRun:
    """The outcome of ``run_api_graph``.

    ``outputs[node_id][i]`` is the list of values of output ``i`` (ComfyUI keeps lists because of
    list mapping); ``ui`` is what ``/history`` shows under ``outputs``; ``executed`` is the order.
    """

    outputs: dict[str, list[list[Any]]] = field(default_factory=dict)
    ui: dict[str, dict[str, list]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    node_errors: dict = field(default_factory=dict)
    progress: list[ProgressEvent] = field(default_factory=list)

    def value(self, node_id: str, index: int = 0) -> Any:
        """The single value of output ``index`` of ``node_id`` (the usual un-listed case)."""
        values = self.outputs[node_id][index]
        if len(values) != 1:
            raise ValueError(f"output {index} of node {node_id} holds {len(values)} values, not 1")
        return values[0]


# --- validation ---------------------------------------------------------------------------


def validate_node_input(received_type, input_type) -> bool:
    """ComfyUI's non-strict link type check."""
    if not received_type != input_type:
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    expected = {t.strip() for t in input_type.split(",")}
    return len(received & expected) > 0


def _full_type_name(klass: type) -> str:
    return klass.__qualname__ if klass.__module__ == "builtins" else f"{klass.__module__}.{klass.__qualname__}"


def _is_link(value) -> bool:
    return (
        isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], (int, float))
    )


_CONVERTERS = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def _hidden_inputs(schema, node_id: str, prompt: dict | None, extra_data: dict) -> dict:
    values = {}
    for h in schema.hidden or []:
        if h == Hidden.prompt:
            values[h] = prompt if prompt is not None else {}
        elif h == Hidden.unique_id:
            values[h] = node_id
        elif h == Hidden.extra_pnginfo:
            values[h] = extra_data.get("extra_pnginfo")
        elif h == Hidden.auth_token_comfy_org:
            values[h] = extra_data.get("auth_token_comfy_org")
        elif h == Hidden.api_key_comfy_org:
            values[h] = extra_data.get("api_key_comfy_org")
        else:
            values[h] = None
    return values


async def _call(cls: type, func_name: str, hidden: dict, kwargs: dict, node_id: str):
    clone = cls.PREPARE_CLASS_CLONE(hidden)
    method = getattr(cls, func_name).__func__
    token = _current_node.set(node_id)
    try:
        result = method(clone, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result
    finally:
        _current_node.reset(token)


async def _validate_node(prompt: dict, node_id: str, classes: dict, validated: dict, links: bool = True):
    if node_id in validated:
        return validated[node_id]
    inputs = prompt[node_id]["inputs"]
    cls = classes[prompt[node_id]["class_type"]]
    class_inputs = cls.INPUT_TYPES()
    required = class_inputs.get("required", {})
    declared = {**required, **class_inputs.get("optional", {})}

    fn = _first_real_override(cls, "validate_inputs", ComfyNode)
    fn_args: list[str] = []
    fn_kwargs = False
    if fn is not None:
        spec = inspect.getfullargspec(fn)
        fn_args, fn_kwargs = spec.args, spec.varkw is not None

    errors: list[dict] = []
    valid = True
    received_types: dict[str, Any] = {}
    for name, spec_ in declared.items():
        input_type = spec_[0]
        extra = spec_[1] if len(spec_) > 1 else {}
        info = (input_type, extra)
        if name not in inputs:
            if name in required:
                errors.append(
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": name,
                        "extra_info": {"input_name": name},
                    }
                )
            continue
        val = inputs[name]
        if links and isinstance(val, list):
            if len(val) != 2:
                errors.append(
                    {
                        "type": "bad_linked_input",
                        "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        "details": name,
                        "extra_info": {"input_name": name, "input_config": info, "received_value": val},
                    }
                )
                continue
            source_id = val[0]
            received = classes[prompt[source_id]["class_type"]].RETURN_TYPES[val[1]]
            received_types[name] = received
            if "input_types" not in fn_args and not validate_node_input(received, input_type):
                errors.append(
                    {
                        "type": "return_type_mismatch",
                        "message": "Return type mismatch between linked nodes",
                        "details": f"{name}, received_type({received}) mismatch input_type({input_type})",
                        "extra_info": {
                            "input_name": name,
                            "input_config": info,
                            "received_type": received,
                            "linked_node": val,
                        },
                    }
                )
                continue
            try:
                upstream = await _validate_node(prompt, source_id, classes, validated)
                if upstream[0] is False:
                    valid = False
            except Exception as ex:
                valid = False
                validated[source_id] = (
                    False,
                    [
                        {
                            "type": "exception_during_inner_validation",
                            "message": "Exception when validating inner node",
                            "details": str(ex),
                            "extra_info": {
                                "input_name": name,
                                "input_config": info,
                                "exception_message": str(ex),
                                "exception_type": _full_type_name(type(ex)),
                                "traceback": traceback.format_tb(ex.__traceback__),
                                "linked_node": val,
                            },
                        }
                    ],
                    source_id,
                )
            continue

        if isinstance(val, dict) and "__value__" in val:
            val = inputs[name] = val["__value__"]
        convert = _CONVERTERS.get(input_type) if isinstance(input_type, str) else None
        if convert is not None:
            try:
                val = inputs[name] = convert(val)
            except Exception as ex:
                errors.append(
                    {
                        "type": "invalid_input_type",
                        "message": f"Failed to convert an input value to a {input_type} value",
                        "details": f"{name}, {val}, {ex}",
                        "extra_info": {
                            "input_name": name,
                            "input_config": info,
                            "received_value": val,
                            "exception_message": str(ex),
                        },
                    }
                )
                continue
        if name in fn_args or fn_kwargs:
            continue
        if "min" in extra and val < extra["min"]:
            errors.append(
                {
                    "type": "value_smaller_than_min",
                    "message": f"Value {val} smaller than min of {extra['min']}",
                    "details": name,
                    "extra_info": {"input_name": name, "input_config": info, "received_value": val},
                }
            )
            continue
        if "max" in extra and val > extra["max"]:
            errors.append(
                {
                    "type": "value_bigger_than_max",
                    "message": f"Value {val} bigger than max of {extra['max']}",
                    "details": name,
                    "extra_info": {"input_name": name, "input_config": info, "received_value": val},
                }
            )
            continue
        if isinstance(input_type, list) and val not in input_type:
            listed = f"(list of length {len(input_type)})" if len(input_type) > 20 else str(input_type)
            errors.append(
                {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": f"{name}: '{val}' not in {listed}",
                    "extra_info": {
                        "input_name": name,
                        "input_config": info if len(input_type) <= 20 else None,
                        "received_value": val,
                    },
                }
            )
            continue

    if fn_args or fn_kwargs:
        passed = {}
        for name, val in inputs.items():
            if name in declared and (name in fn_args or fn_kwargs):
                passed[name] = None if (links and _is_link(val)) else val
        if "input_types" in fn_args:
            passed["input_types"] = received_types
        schema = cls.FINALIZE_SCHEMA()
        ret = await _call(cls, "validate_inputs", _hidden_inputs(schema, node_id, None, {}), passed, node_id)
        if ret is not True:
            for name in passed:
                details = name if ret is False else f"{name} - {ret}"
                errors.append(
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": details,
                        "extra_info": {"input_name": name},
                    }
                )

    result = (not errors and valid, errors, node_id)
    validated[node_id] = result
    return result


def _collect_node_errors(prompt: dict, validated: dict, output_id: str, node_errors: dict) -> None:
    for node_id, (ok, reasons, _) in validated.items():
        if ok is not True and reasons:
            entry = node_errors.setdefault(
                node_id, {"errors": reasons, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]}
            )
            entry["dependent_outputs"].append(output_id)


def _failed(errors: list[tuple[str, list[dict]]], node_errors: dict) -> PromptValidationError:
    details = "\n".join(f"{e['message']}: {e['details']}" for _, reasons in errors for e in reasons)
    return PromptValidationError(
        {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": details,
            "extra_info": {},
        },
        node_errors,
    )


async def _validate_prompt(prompt: dict, classes: dict, targets: list[str] | None) -> tuple[list[str], dict]:
    outputs = []
    for node_id, node in prompt.items():
        if "class_type" not in node:
            raise PromptValidationError(
                {
                    "type": "invalid_prompt",
                    "message": "Cannot execute because a node is missing the class_type property.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {},
                }
            )
        cls = classes.get(node["class_type"])
        if cls is None:
            raise PromptValidationError(
                {
                    "type": "invalid_prompt",
                    "message": f"Cannot execute because node {node['class_type']} does not exist.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {},
                }
            )
        if (targets is None and cls.OUTPUT_NODE is True) or (targets is not None and node_id in targets):
            outputs.append(node_id)
    if not outputs:
        raise PromptValidationError(
            {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}
        )

    good: list[str] = []
    errors: list[tuple[str, list[dict]]] = []
    node_errors: dict = {}
    validated: dict = {}
    for output_id in outputs:
        try:
            ok, reasons, _ = await _validate_node(prompt, output_id, classes, validated)
        except Exception as ex:
            ok = False
            reasons = [
                {
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(ex),
                    "extra_info": {
                        "exception_type": _full_type_name(type(ex)),
                        "traceback": traceback.format_tb(ex.__traceback__),
                    },
                }
            ]
            validated[output_id] = (False, reasons, output_id)
        if ok is True:
            good.append(output_id)
        else:
            errors.append((output_id, reasons))
            _collect_node_errors(prompt, validated, output_id, node_errors)
    if not good:
        raise _failed(errors, node_errors)
    return good, node_errors


# --- execution ----------------------------------------------------------------------------


def _format_value(x):
    if x is None or isinstance(x, (int, float, bool, str)):
        return x
    return str(x)


async def _execute_node(cls: type, node_id: str, input_data: dict, hidden: dict) -> list:
    """Call the node once per mapped item and return the raw results (``NodeOutput`` objects)."""
    func_name = cls.FUNCTION
    if cls.INPUT_IS_LIST:
        calls = [input_data]
    elif not input_data:
        calls = [{}]
    else:
        n = max(len(v) for v in input_data.values())
        calls = [{k: v[i if len(v) > i else -1] for k, v in input_data.items()} for i in range(n)]
    results = []
    for kwargs in calls:
        model_management.throw_exception_if_processing_interrupted()
        results.append(await _call(cls, func_name, hidden, kwargs, node_id))
    return results


def _merge(cls: type, results: list) -> tuple[list[list], dict]:
    values, uis = [], []
    for r in results:
        if not isinstance(r, NodeOutput):
            raise TypeError(f"the comfy double expected a NodeOutput from {cls.__name__}, got {type(r)}")
        if r.expand is not None or r.block_execution is not None:
            raise NotImplementedError("the comfy double does not run node expansion or execution blockers")
        if r.ui is not None:
            uis.append(r.ui if isinstance(r.ui, dict) else r.ui.as_dict())
        if r.result is not None:
            values.append(r.result)
    output: list[list] = []
    if values:
        # ComfyUI zips without strict: values beyond the declared outputs are dropped.
        for i, is_list in zip(range(len(values[0])), cls.OUTPUT_IS_LIST, strict=False):
            output.append([y for v in values for y in v[i]] if is_list else [v[i] for v in values])
    ui = {k: [y for u in uis for y in u[k]] for k in uis[0]} if uis else {}
    return output, ui


def _execution_order(prompt: dict, targets: list[str]) -> list[str]:
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(node_id: str) -> None:
        if state.get(node_id) == "done":
            return
        if state.get(node_id) == "visiting":
            raise ValueError(f"the graph has a dependency cycle through node {node_id}")
        state[node_id] = "visiting"
        for value in prompt[node_id]["inputs"].values():
            if _is_link(value):
                visit(value[0])
        state[node_id] = "done"
        order.append(node_id)

    for target in sorted(targets):
        visit(target)
    return order


def _as_class_map(node_classes) -> dict[str, type]:
    if isinstance(node_classes, Mapping):
        return dict(node_classes)
    if isinstance(node_classes, Iterable):
        return {cls.GET_SCHEMA().node_id: cls for cls in node_classes}
    raise TypeError("node_classes must map class_type to a V3 node class, or list V3 node classes")


def _prepare_classes(classes: dict[str, type]) -> None:
    for name, cls in classes.items():
        if not (isinstance(cls, type) and issubclass(cls, ComfyNode)):
            raise TypeError(f"{name}: the comfy double runs V3 io.ComfyNode classes only, got {cls!r}")
        cls.GET_SCHEMA()


def _copy_prompt(graph: dict) -> dict:
    return {nid: {**node, "inputs": dict(node.get("inputs", {}))} for nid, node in graph.items()}


async def arun_api_graph(
    graph: dict, node_classes, *, targets: list[str] | None = None, extra_data: dict | None = None
) -> GraphRun:
    """Async form of ``run_api_graph``."""
    classes = _as_class_map(node_classes)
    _prepare_classes(classes)
    extra_data = extra_data or {}
    prompt = _copy_prompt(graph)
    good, node_errors = await _validate_prompt(prompt, classes, targets)
    run = GraphRun(node_errors=node_errors)
    _start_run()
    with torch.inference_mode():
        for node_id in _execution_order(prompt, good):
            cls = classes[prompt[node_id]["class_type"]]
            declared = cls.INPUT_TYPES()
            known = {**declared.get("required", {}), **declared.get("optional", {}), **declared.get("hidden", {})}
            input_data: dict[str, list] = {}
            for name, value in prompt[node_id]["inputs"].items():
                if _is_link(value):
                    source = run.outputs.get(value[0], [])
                    input_data[name] = source[value[1]] if value[1] < len(source) else [None]
                elif name in known:
                    input_data[name] = [value]
            hidden = _hidden_inputs(cls.SCHEMA, node_id, graph, extra_data)
            try:
                results = await _execute_node(cls, node_id, input_data, hidden)
                run.outputs[node_id], ui = _merge(cls, results)
            except model_management.InterruptProcessingException:
                run.progress = list(progress_events)
                raise
            except Exception as ex:
                raise NodeExecutionError(
                    {
                        "node_id": node_id,
                        "node_type": prompt[node_id]["class_type"],
                        "executed": list(run.executed),
                        "exception_message": f"{ex}\n",
                        "exception_type": _full_type_name(type(ex)),
                        "traceback": traceback.format_tb(ex.__traceback__),
                        "current_inputs": {k: [_format_value(x) for x in v] for k, v in input_data.items()},
                    }
                ) from ex
            if ui:
                run.ui[node_id] = ui
            run.executed.append(node_id)
    run.progress = list(progress_events)
    return run


def run_api_graph(
    graph: dict, node_classes, *, targets: list[str] | None = None, extra_data: dict | None = None
) -> GraphRun:
    """Validate and run an API-format graph ``{id: {"class_type", "inputs"}}`` on the double.

    Links are ``[source_id, output_index]``. As in ComfyUI only output nodes and what they need
    run; ``targets`` (double only) names the nodes to run instead. ``node_classes`` maps
    ``class_type`` to a V3 node class (or is a list of them). Raises ``PromptValidationError``
    (HTTP 400 in ComfyUI), ``NodeExecutionError`` (status "error" in ``/history``) or
    ``InterruptProcessingException`` (status "error" with ``execution_interrupted``).
    """
    return asyncio.run(arun_api_graph(graph, node_classes, targets=targets, extra_data=extra_data))


async def arun_node(node_cls: type, **inputs) -> NodeOutput:
    """Async form of ``run_node``."""
    _prepare_classes({"node": node_cls})
    node_id = "1"
    prompt = {node_id: {"class_type": node_cls.SCHEMA.node_id, "inputs": dict(inputs)}}
    classes = {node_cls.SCHEMA.node_id: node_cls}
    ok, reasons, _ = await _validate_node(prompt, node_id, classes, {}, links=False)
    if not ok:
        node_errors = {
            node_id: {"errors": reasons, "dependent_outputs": [node_id], "class_type": node_cls.SCHEMA.node_id}
        }
        raise _failed([(node_id, reasons)], node_errors)
    declared = node_cls.INPUT_TYPES()
    known = {**declared.get("required", {}), **declared.get("optional", {}), **declared.get("hidden", {})}
    input_data = {k: [v] for k, v in prompt[node_id]["inputs"].items() if k in known}
    _start_run()
    hidden = _hidden_inputs(node_cls.SCHEMA, node_id, prompt, {})
    with torch.inference_mode():
        results = await _execute_node(node_cls, node_id, input_data, hidden)
    return results[0]


def run_node(node_cls: type, /, **inputs) -> NodeOutput:
    """Validate ``inputs`` against ``node_cls``'s schema as ComfyUI does, then run ``execute``.

    Every value is a constant here (a list is a value, not a link). Returns the ``NodeOutput``
    (a tuple or ``None`` returned by ``execute`` is normalised as in ComfyUI). Raises
    ``PromptValidationError`` on invalid inputs; exceptions from ``execute`` propagate unchanged.
    """
    return asyncio.run(arun_node(node_cls, **inputs))
