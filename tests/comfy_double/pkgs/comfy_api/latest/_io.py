"""Test double of ``comfy_api.latest._io``: the V3 node schema (imported as ``io``).

Kept faithful where node code or the server depends on it:
- every ComfyType has an ``io_type`` string; ``Input``/``Output`` classes are bound to their type
  through ``Parent``; ``Custom("X")`` makes a new type; type names compare like ComfyUI's
  (``"*"`` matches anything, ``"A,B"`` matches ``"A"``);
- ``as_dict()`` of inputs and outputs gives the same keys ``/object_info`` shows (``None`` dropped);
- a V3 combo input's type is the string ``"COMBO"`` with the choices under ``options``;
- ``Schema.finalize`` names unnamed outputs ``_{index}_{io_type}_`` and adds the ``prompt`` and
  ``extra_pnginfo`` hidden inputs to output nodes; ``Schema.validate`` rejects duplicate ids;
- ``ComfyNode`` exposes the V1 view (``INPUT_TYPES``, ``RETURN_TYPES``, ``RETURN_NAMES``,
  ``OUTPUT_NODE``, ``FUNCTION``, ...) that the executor and ``/object_info`` read;
- ``execute`` runs on a locked copy of the class whose ``hidden`` holds the hidden inputs:
  assigning a class attribute inside ``execute`` raises ``AttributeError`` as in ComfyUI;
- ``execute`` may return a ``NodeOutput``, a tuple, ``None`` or a dict; it is normalised to a
  ``NodeOutput``.
Not reproduced: dynamic inputs (autogrow, match-type), node expansion, ``ComfyAPI`` resources.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypedDict

import torch


def _prune(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class classproperty:
    def __init__(self, f):
        self.f = f

    def __get__(self, obj, owner):
        return self.f(owner)


class _StringIOType(str):
    """A type name whose ``!=`` follows ComfyUI: ``"*"`` matches all, comma lists match on a subset."""

    def __ne__(self, value: object) -> bool:
        if self == "*" or value == "*":
            return False
        if not isinstance(value, str):
            return True
        a = frozenset(self.split(","))
        b = frozenset(value.split(","))
        return not (a <= b or b <= a)

    __hash__ = str.__hash__


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


class _ComfyType:
    Type = Any
    io_type: str = None


def comfytype(io_type: str, **kwargs):
    """Class decorator that makes ``cls`` a ComfyType named ``io_type`` and binds its Input/Output."""

    def decorate(cls):
        if not issubclass(cls, _ComfyType):
            body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            cls = type(cls.__name__, (cls, ComfyTypeIO), body)
        for name in ("Input", "Output"):
            io_cls = getattr(cls, name, None)
            if io_cls is None:
                continue
            bound = type(io_cls.__name__, (io_cls,), {"__module__": io_cls.__module__, "__doc__": io_cls.__doc__})
            bound.Parent = cls
            setattr(cls, name, bound)
        cls.io_type = _StringIOType(io_type)
        return cls

    return decorate


def Custom(io_type: str) -> type:
    """A new ComfyType named ``io_type`` with default ``Input`` and ``Output`` classes."""

    @comfytype(io_type=io_type)
    class CustomComfyType(ComfyTypeIO): ...

    return CustomComfyType


class _IO_V3:
    Parent: type = None

    @property
    def io_type(self):
        return self.Parent.io_type

    @property
    def Type(self):
        return self.Parent.Type


class Input(_IO_V3):
    """A socket input (no widget)."""

    def __init__(
        self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None, extra_dict=None
    ):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict if extra_dict is not None else {}

    def as_dict(self) -> dict:
        return _prune(
            {"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip, "lazy": self.lazy}
        ) | _prune(self.extra_dict)

    def get_io_type(self):
        return _StringIOType(self.io_type)


class WidgetInput(Input):
    """An input shown as a widget (a value typed in the node) unless ``force_input`` is set."""

    def __init__(
        self,
        id: str,
        display_name: str = None,
        optional=False,
        tooltip: str = None,
        lazy: bool = None,
        default: Any = None,
        socketless: bool = None,
        widget_type: str = None,
        force_input: bool = None,
        extra_dict=None,
    ):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def as_dict(self) -> dict:
        return super().as_dict() | _prune(
            {
                "default": self.default,
                "socketless": self.socketless,
                "widgetType": self.widget_type,
                "forceInput": self.force_input,
            }
        )

    def get_io_type(self):
        return self.widget_type if self.widget_type is not None else super().get_io_type()


class Output(_IO_V3):
    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def as_dict(self) -> dict:
        return _prune(
            {"display_name": self.display_name, "tooltip": self.tooltip, "is_output_list": self.is_output_list}
        )

    def get_io_type(self):
        return self.io_type


class ComfyTypeI(_ComfyType):
    class Input(Input): ...


class ComfyTypeIO(ComfyTypeI):
    class Output(Output): ...


@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    Type = bool

    class Input(WidgetInput):
        def __init__(
            self,
            id: str,
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            default: bool = None,
            label_on: str = None,
            label_off: str = None,
            socketless: bool = None,
            force_input: bool = None,
        ):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.label_on = label_on
            self.label_off = label_off

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({"label_on": self.label_on, "label_off": self.label_off})


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    Type = int

    class Input(WidgetInput):
        def __init__(
            self,
            id: str,
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            default: int = None,
            min: int = None,
            max: int = None,
            step: int = None,
            control_after_generate: bool = None,
            display_mode: NumberDisplay = None,
            socketless: bool = None,
            force_input: bool = None,
        ):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min = min
            self.max = max
            self.step = step
            self.control_after_generate = control_after_generate
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | _prune(
                {
                    "min": self.min,
                    "max": self.max,
                    "step": self.step,
                    "control_after_generate": self.control_after_generate,
                    "display": self.display_mode.value if self.display_mode else None,
                }
            )


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    Type = float

    class Input(WidgetInput):
        def __init__(
            self,
            id: str,
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            default: float = None,
            min: float = None,
            max: float = None,
            step: float = None,
            round: float = None,
            display_mode: NumberDisplay = None,
            socketless: bool = None,
            force_input: bool = None,
        ):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min = min
            self.max = max
            self.step = step
            self.round = round
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | _prune(
                {
                    "min": self.min,
                    "max": self.max,
                    "step": self.step,
                    "round": self.round,
                    "display": self.display_mode,
                }
            )


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(
            self,
            id: str,
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            multiline=False,
            placeholder: str = None,
            default: str = None,
            dynamic_prompts: bool = None,
            socketless: bool = None,
            force_input: bool = None,
        ):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.multiline = multiline
            self.placeholder = placeholder
            self.dynamic_prompts = dynamic_prompts

        def as_dict(self) -> dict:
            return super().as_dict() | _prune(
                {"multiline": self.multiline, "placeholder": self.placeholder, "dynamicPrompts": self.dynamic_prompts}
            )


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        """A dropdown; ``options`` may be a list or an ``Enum`` class (its values are used)."""

        def __init__(
            self,
            id: str,
            options: list[str] | list[int] | type[Enum] = None,
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            default: str | int | Enum = None,
            control_after_generate: bool = None,
            upload: UploadType = None,
            image_folder: FolderType = None,
            remote=None,
            socketless: bool = None,
        ):
            if isinstance(options, type) and issubclass(options, Enum):
                options = [v.value for v in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
            self.multiselect = False
            self.options = options
            self.control_after_generate = control_after_generate
            self.upload = upload
            self.image_folder = image_folder
            self.remote = remote

        def as_dict(self) -> dict:
            return super().as_dict() | _prune(
                {
                    "multiselect": self.multiselect,
                    "options": self.options,
                    "control_after_generate": self.control_after_generate,
                    **({self.upload.value: True} if self.upload is not None else {}),
                    "image_folder": self.image_folder.value if self.image_folder else None,
                }
            )

    class Output(Output):
        def __init__(
            self,
            id: str = None,
            display_name: str = None,
            options: list[str] = None,
            tooltip: str = None,
            is_output_list=False,
        ):
            super().__init__(id, display_name, tooltip, is_output_list)
            self.options = options if options is not None else []

        @property
        def io_type(self):
            return self.options


@comfytype(io_type="COMBO")
class MultiCombo(ComfyTypeI):
    Type = list[str]

    class Input(Combo.Input):
        def __init__(
            self,
            id: str,
            options: list[str],
            display_name: str = None,
            optional=False,
            tooltip: str = None,
            lazy: bool = None,
            default: list[str] = None,
            placeholder: str = None,
            chip: bool = None,
            control_after_generate: bool = None,
            socketless: bool = None,
        ):
            super().__init__(
                id,
                options,
                display_name,
                optional,
                tooltip,
                lazy,
                default,
                control_after_generate,
                socketless=socketless,
            )
            self.multiselect = True
            self.placeholder = placeholder
            self.chip = chip

        def as_dict(self) -> dict:
            return super().as_dict() | _prune(
                {"multi_select": self.multiselect, "placeholder": self.placeholder, "chip": self.chip}
            )


@comfytype(io_type="IMAGE")
class Image(ComfyTypeIO):
    Type = torch.Tensor


@comfytype(io_type="MASK")
class Mask(ComfyTypeIO):
    Type = torch.Tensor


@comfytype(io_type="LATENT")
class Latent(ComfyTypeIO):
    class LatentDict(TypedDict, total=False):
        samples: torch.Tensor
        noise_mask: torch.Tensor
        batch_index: list[int]
        type: str

    Type = LatentDict


@comfytype(io_type="CONDITIONING")
class Conditioning(ComfyTypeIO):
    Type = list


@comfytype(io_type="SAMPLER")
class Sampler(ComfyTypeIO):
    Type = Any


@comfytype(io_type="SIGMAS")
class Sigmas(ComfyTypeIO):
    Type = torch.Tensor


@comfytype(io_type="NOISE")
class Noise(ComfyTypeIO):
    Type = torch.Tensor


@comfytype(io_type="GUIDER")
class Guider(ComfyTypeIO):
    Type = Any


@comfytype(io_type="CLIP")
class Clip(ComfyTypeIO):
    Type = Any


@comfytype(io_type="CONTROL_NET")
class ControlNet(ComfyTypeIO):
    Type = Any


@comfytype(io_type="VAE")
class Vae(ComfyTypeIO):
    Type = Any


@comfytype(io_type="MODEL")
class Model(ComfyTypeIO):
    Type = Any


@comfytype(io_type="CLIP_VISION")
class ClipVision(ComfyTypeIO):
    Type = Any


@comfytype(io_type="UPSCALE_MODEL")
class UpscaleModel(ComfyTypeIO):
    Type = Any


@comfytype(io_type="*")
class AnyType(ComfyTypeIO):
    Type = Any


class Hidden(str, Enum):
    """Hidden inputs a node can ask for in ``Schema(hidden=[...])``; read them from ``cls.hidden``."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """``cls.hidden`` during ``execute``: requested hidden values, ``None`` for anything else."""

    def __init__(self, unique_id, prompt, extra_pnginfo, dynprompt, auth_token_comfy_org, api_key_comfy_org, **kwargs):
        self.unique_id = unique_id
        self.prompt = prompt
        self.extra_pnginfo = extra_pnginfo
        self.dynprompt = dynprompt
        self.auth_token_comfy_org = auth_token_comfy_org
        self.api_key_comfy_org = api_key_comfy_org

    def __getattr__(self, key: str):
        return None

    @classmethod
    def from_dict(cls, d: dict | None) -> HiddenHolder:
        d = d or {}
        return cls(**{h.name: d.get(h) for h in Hidden})


@dataclass
class Schema:
    """Definition of a V3 node: id, labels, inputs, outputs, flags."""

    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list[Input] = None
    outputs: list[Output] = None
    hidden: list[Hidden] = None
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self) -> None:
        input_ids = [i.id for i in self.inputs or []]
        output_ids = [o.id for o in self.outputs or []]
        issues = []
        if len(set(input_ids)) != len(input_ids):
            issues.append(
                f"Input ids must be unique, but {[k for k, n in Counter(input_ids).items() if n > 1]} are not."
            )
        if len(set(output_ids)) != len(output_ids):
            issues.append(
                f"Output ids must be unique, but {[k for k, n in Counter(output_ids).items() if n > 1]} are not."
            )
        both = set(input_ids) & set(output_ids)
        if both:
            issues.append(f"Ids must be unique between inputs and outputs, but {both} are not.")
        if issues:
            raise ValueError("\n".join(issues))

    def finalize(self) -> None:
        wanted = []
        if self.is_api_node:
            wanted += [Hidden.auth_token_comfy_org, Hidden.api_key_comfy_org]
        if self.is_output_node:
            wanted += [Hidden.prompt, Hidden.extra_pnginfo]
        for h in wanted:
            if self.hidden is None:
                self.hidden = []
            if h not in self.hidden:
                self.hidden.append(h)
        for i, output in enumerate(self.outputs or []):
            if output.id is None:
                output.id = f"_{i}_{output.io_type}_"

    def get_v1_info(self, cls) -> dict:
        """The node's entry in ``/object_info``."""
        inputs: dict[str, dict] = {"required": {}}
        for i in self.inputs or []:
            entry = i.as_dict()
            entry.pop("optional", None)
            inputs.setdefault("optional" if i.optional else "required", {})[i.id] = (i.get_io_type(), entry)
        for h in self.hidden or []:
            inputs.setdefault("hidden", {})[h.name] = (h.value,)
        outputs = self.outputs or []
        return {
            "input": inputs,
            "input_order": {k: list(v) for k, v in inputs.items()},
            "output": [o.io_type for o in outputs],
            "output_is_list": [o.is_output_list for o in outputs],
            "output_name": [o.display_name or o.io_type for o in outputs],
            "output_tooltips": [o.tooltip or None for o in outputs],
            "name": self.node_id,
            "display_name": self.display_name,
            "description": self.description,
            "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
            "category": self.category,
            "output_node": self.is_output_node,
            "deprecated": self.is_deprecated,
            "experimental": self.is_experimental,
            "api_node": self.is_api_node,
        }


class _ComfyNodeInternal:
    """Marker base the executor uses to tell V3 nodes from V1 nodes."""


class _NodeOutputInternal:
    """Marker base the executor uses to recognise ``NodeOutput``."""


def _lock_class(cls: type) -> type:
    """A subclass of ``cls`` whose class attributes cannot be assigned (as ComfyUI locks ``execute``'s ``cls``)."""

    class LockedMeta(type(cls)):
        def __setattr__(self, name, value):
            raise AttributeError(f"Cannot modify class attribute '{name}' on locked class '{self.__name__}'")

    return LockedMeta(cls.__name__, (cls,), {})


def _first_real_override(cls: type, name: str, base: type):
    """``getattr(cls, name)`` if a class between ``cls`` and ``base`` redefines it, else ``None``."""
    base_func = getattr(base, name).__func__
    for c in cls.__mro__:
        if c is base:
            break
        if name in c.__dict__ and getattr(c, name).__func__ is not base_func:
            return getattr(cls, name)
    return None


class ComfyNode(_ComfyNodeInternal):
    """Base class of V3 nodes: override ``define_schema`` and ``execute`` (both classmethods)."""

    RELATIVE_PYTHON_MODULE = None
    SCHEMA: Schema = None
    hidden: HiddenHolder = None

    @classmethod
    @abstractmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    @abstractmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def validate_inputs(cls, **kwargs) -> bool | str:
        """Optional: return ``True`` or an error message; only declared inputs are passed."""
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> Any:
        raise NotImplementedError

    @classmethod
    def check_lazy_status(cls, **kwargs) -> list[str]:
        return [name for name in kwargs if kwargs[name] is None]

    @classmethod
    def GET_BASE_CLASS(cls):
        return ComfyNode

    @classmethod
    def VALIDATE_CLASS(cls) -> None:
        if _first_real_override(cls, "define_schema", ComfyNode) is None:
            raise Exception(f"No define_schema function was defined for node class {cls.__name__}.")
        if _first_real_override(cls, "execute", ComfyNode) is None:
            raise Exception(f"No execute function was defined for node class {cls.__name__}.")

    @classmethod
    def FINALIZE_SCHEMA(cls) -> Schema:
        schema = cls.define_schema()
        schema.finalize()
        return schema

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        """Check the class, build and check the schema, and remember it as ``cls.SCHEMA``."""
        cls.VALIDATE_CLASS()
        schema = cls.FINALIZE_SCHEMA()
        schema.validate()
        cls.SCHEMA = schema
        return schema

    @classmethod
    def INPUT_TYPES(cls, include_hidden=True, return_schema=False):
        schema = cls.FINALIZE_SCHEMA()
        inputs = schema.get_v1_info(cls)["input"]
        if not include_hidden:
            inputs.pop("hidden", None)
        return (inputs, schema) if return_schema else inputs

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict:
        return cls.GET_SCHEMA().get_v1_info(cls)

    @classmethod
    def _schema(cls) -> Schema:
        # Read-only access: ``execute`` runs on a locked class, so nothing may be assigned here.
        return cls.SCHEMA if cls.SCHEMA is not None else cls.FINALIZE_SCHEMA()

    @classproperty
    def RETURN_TYPES(cls):
        return [o.io_type for o in cls._schema().outputs or []]

    @classproperty
    def RETURN_NAMES(cls):
        return [o.display_name or o.io_type for o in cls._schema().outputs or []]

    @classproperty
    def OUTPUT_IS_LIST(cls):
        return [o.is_output_list for o in cls._schema().outputs or []]

    @classproperty
    def OUTPUT_TOOLTIPS(cls):
        return [o.tooltip or None for o in cls._schema().outputs or []]

    @classproperty
    def OUTPUT_NODE(cls):
        return cls._schema().is_output_node

    @classproperty
    def INPUT_IS_LIST(cls):
        return cls._schema().is_input_list

    @classproperty
    def CATEGORY(cls):
        return cls._schema().category

    @classproperty
    def DESCRIPTION(cls):
        return cls._schema().description

    @classproperty
    def NOT_IDEMPOTENT(cls):
        return cls._schema().not_idempotent

    @classproperty
    def FUNCTION(cls):
        return "EXECUTE_NORMALIZED_ASYNC" if inspect.iscoroutinefunction(cls.execute) else "EXECUTE_NORMALIZED"

    @classmethod
    def PREPARE_CLASS_CLONE(cls, hidden_inputs: dict) -> type:
        clone = type(f"{cls.__name__}Clone", (cls,), {})
        clone.hidden = HiddenHolder.from_dict(hidden_inputs)
        return _lock_class(clone)

    @classmethod
    def _normalize(cls, returned) -> NodeOutput:
        if returned is None:
            out = NodeOutput()
        elif isinstance(returned, NodeOutput):
            out = returned
        elif isinstance(returned, tuple):
            out = NodeOutput(*returned)
        elif isinstance(returned, dict):
            out = NodeOutput(*returned.get("result", ()), ui=returned.get("ui"), expand=returned.get("expand"))
        else:
            raise Exception(f"Invalid return type from node: {type(returned)}")
        if out.expand is not None and not cls._schema().enable_expand:
            raise Exception(
                f"Node {cls.__name__} is not expandable, but expand included in NodeOutput; "
                "developer should set enable_expand=True on node's Schema to allow this."
            )
        return out

    @classmethod
    def EXECUTE_NORMALIZED(cls, **kwargs) -> NodeOutput:
        return cls._normalize(cls.execute(**kwargs))

    @classmethod
    async def EXECUTE_NORMALIZED_ASYNC(cls, **kwargs) -> NodeOutput:
        return cls._normalize(await cls.execute(**kwargs))


class NodeOutput(_NodeOutputInternal):
    """What ``execute`` returns: the output values in schema order, plus optional ``ui`` data."""

    def __init__(self, *args: Any, ui: _UIOutput | dict = None, expand: dict = None, block_execution: str = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self):
        return self.args if len(self.args) > 0 else None

    def __getitem__(self, index) -> Any:
        return self.args[index]


class _UIOutput(ABC):
    @abstractmethod
    def as_dict(self) -> dict: ...
