"""The grader's half of a graded call: the student's function as a proxy that runs in the kernel.

A check runs in the grader's own process (:mod:`emgeo.course.grading.verdicts`) on a
:class:`RemoteFunction`: each call saves its arguments (``torch.save``, base64) into a request,
runs the student's function in the kernel on them (:mod:`.kernel_side`, sent with the request),
and reads the answer back with ``torch.load(weights_only=True)``, which builds only plain data:
tensors, numbers, strings and containers. What else the function returned comes back as a
description: an emgeo record (dataclass or named tuple) is built again from the grader's own
class (or peft's: :data:`RECORD_PACKAGES`), a module as a :class:`RemoteModule` whose methods
run in the kernel, anything else as an instance of :class:`Returned`. What the function did to
its arguments (a model trained in place, an optimizer stepped, a generator drawn from) is copied
back into the grader's arguments.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import importlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from emgeo.course.grading.kernel_side import TAG

# Runs ``source`` in the kernel and returns the executed cell's outputs (nbformat dicts).
Channel = Callable[[str], Sequence[dict]]
# The packages whose dataclasses and named tuples a returned record is built from again (the
# course's own, and the configs of the libraries its exercises return); others stay Returned.
RECORD_PACKAGES = ("emgeo", "peft")
_KERNEL_SIDE = Path(__file__).with_name("kernel_side.py").read_text(encoding="utf-8")


class KernelStopped(BaseException):  # noqa: N818 (no check may catch it as an Exception)
    """The kernel ran out of time or died during a call: the notebook stops there."""

    def __init__(self, status: str, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


class Unsendable(Exception):  # noqa: N818 (what it says of the check's inputs)
    """The check's inputs cannot be sent to the kernel (they do not pickle)."""


class StudentRaised(Exception):
    """The student's function raised, or the kernel gave no answer: the exercise fails."""


class Returned:
    """Something the student's function returned that the grader does not rebuild."""


def _request_cell(name: str, handle: int | None, args: tuple, kwargs: dict) -> str:
    buffer = io.BytesIO()
    try:
        torch.save({"name": name, "handle": handle, "args": args, "kwargs": kwargs}, buffer)
    except Exception as err:  # an argument that does not pickle (say, an nnsight wrapper)
        raise Unsendable(f"the check's inputs for `{name}` cannot be sent: {err!r}") from None
    payload = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f"exec({_KERNEL_SIDE!r}, "
        'globals().setdefault("_emgeo_grading", {"__name__": "grading"}))\n'
        f'_emgeo_grading["_emgeo_grading_call"]({payload!r}, globals())'
    )


def _answer(outputs: Sequence[dict], label: str) -> dict:
    """The kernel's answer: the value of the request cell, read as plain data only."""
    for output in outputs:
        if output.get("output_type") == "execute_result":
            text = output.get("data", {}).get("text/plain", "")
            try:
                raw = base64.b64decode(ast.literal_eval(text), validate=True)
                reply = torch.load(io.BytesIO(raw), weights_only=True)
            except Exception as err:
                why = f"the kernel's answer for `{label}` is unreadable: {err}"
                raise StudentRaised(why) from None
            if isinstance(reply, dict) and isinstance(reply.get("ok"), bool):
                return reply
    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if "ename" in o]
    why = errors[0] if errors else "no answer"
    raise StudentRaised(f"the kernel gave no answer for `{label}` ({why})")


def call_in_kernel(
    channel: Channel, name: str, args: tuple, kwargs: dict, handle: int | None = None
) -> tuple[Any, str]:
    """Run ``name`` (a function of the student's, or a method of the object ``handle``) in the
    kernel on ``args``; return its value and the module it was defined in."""
    label = name if handle is None else f"{name} of a returned object"
    reply = _answer(channel(_request_cell(name, handle, args, kwargs)), label)
    if not reply["ok"]:
        ename, evalue = str(reply.get("ename")), str(reply.get("evalue"))
        if ename == "NotImplementedError":
            raise NotImplementedError(evalue)
        raise StudentRaised(f"`{label}` raised {ename}: {evalue}".rstrip(": "))
    for original, after in zip(args, reply.get("args", []), strict=False):
        copy_back(original, after)
    return decode(reply.get("value"), channel, args), str(reply.get("module", ""))


class RemoteFunction:
    """The student's function ``name`` as the grader calls it: it runs in the kernel."""

    def __init__(self, channel: Channel, name: str) -> None:
        self.channel, self.__name__ = channel, name
        self.modules: set[str] = set()  # where the function that ran was defined, call by call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        value, module = call_in_kernel(self.channel, self.__name__, args, kwargs)
        self.modules.add(module)
        return value


class RemoteCallable:
    """A function the student's code returned (an edit, a closure): calling it runs it in the
    kernel, on copies of what the grader gives it."""

    def __init__(self, channel: Channel, encoded: dict) -> None:
        self._remote = (channel, int(encoded["handle"]))
        self.__name__ = str(encoded.get("type", "function")).rpartition(".")[2]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel, handle = self._remote
        return call_in_kernel(channel, "__call__", args, kwargs, handle)[0]


class RemoteModule(nn.Module):
    """A module the student's code returned: its parameters, buffers and plain attributes as
    they were when it returned, its methods (``forward`` too) run on it in the kernel."""

    def __init__(self, channel: Channel, encoded: dict) -> None:
        super().__init__()
        self._remote = (channel, int(encoded["handle"]))
        self._type = str(encoded.get("type", "module"))
        for name, p in dict(encoded.get("parameters", {})).items():
            owner, leaf = _owner(self, name)
            param = nn.Parameter(p["data"], requires_grad=p["data"].is_floating_point())
            param.grad = p.get("grad")
            owner.register_parameter(leaf, param)
        for name, buffer in dict(encoded.get("buffers", {})).items():
            owner, leaf = _owner(self, name)
            owner.register_buffer(leaf, buffer)
        for name, value in dict(encoded.get("attributes", {})).items():
            if not hasattr(self, name):
                object.__setattr__(self, name, decode(value, channel, ()))
        self._ready = True  # from now on, an unknown attribute is a method of the kernel's object

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        channel, handle = self._remote
        return call_in_kernel(channel, "__call__", args, kwargs, handle)[0]

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or not self.__dict__.get("_ready"):
                raise
        channel, handle = self.__dict__["_remote"]
        return lambda *args, **kwargs: call_in_kernel(channel, name, args, kwargs, handle)[0]


def _owner(root: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    """The submodule of ``root`` that holds ``dotted`` (made on the way), and the leaf name."""
    *path, leaf = dotted.split(".")
    module = root
    for part in path:
        if part not in module._modules:
            module.add_module(part, nn.Module())
        module = module._modules[part]
    return module, leaf


def _record(encoded: dict, channel: Channel) -> Any:
    """An emgeo dataclass or named tuple, built from the grader's own class; else a Returned."""
    module, _, qualname = str(encoded.get("type", "")).rpartition(".")
    fields = {k: decode(v, channel, ()) for k, v in dict(encoded.get("fields", {})).items()}
    kind = None
    if module.split(".")[0] in RECORD_PACKAGES:
        kind = getattr(importlib.import_module(module), qualname, None)
    if kind is not None and (dataclasses.is_dataclass(kind) or hasattr(kind, "_fields")):
        try:
            return kind(**fields)
        except Exception:  # the fields do not fit the class: what came back is something else
            pass
    return _returned(str(encoded.get("type", "")))


def _set(encoded: dict, channel: Channel) -> set:
    items = [decode(item, channel, ()) for item in encoded.get("items", [])]
    try:
        return set(items)
    except TypeError:  # an item that cannot be in a set: what came back is something else
        return _returned("set")  # type: ignore[return-value]


def _returned(type_name: str) -> Returned:
    name = type_name.rpartition(".")[2] or "object"
    return type(name, (Returned,), {"__module__": "student"})()


def decode(value: Any, channel: Channel, args: tuple) -> Any:
    """What the kernel's plain-data answer stands for, built in the grader."""
    if isinstance(value, dict) and TAG in value:
        kind = value[TAG]
        if (
            kind == "argument"
            and isinstance(value.get("index"), int)
            and value["index"] < len(args)
        ):
            return args[value["index"]]
        if kind == "generator" and isinstance(value.get("state"), Tensor):
            generator = torch.Generator()
            generator.set_state(value["state"])
            return generator
        if kind == "module":
            return RemoteModule(channel, value)
        if kind == "callable":
            return RemoteCallable(channel, value)
        if kind == "record":
            return _record(value, channel)
        if kind == "set":
            return _set(value, channel)
        return _returned(str(value.get("type", "")))
    if isinstance(value, list | tuple):
        items = [decode(item, channel, args) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {k: decode(v, channel, args) for k, v in value.items()}
    return value


def copy_back(original: Any, after: Any) -> None:
    """Make ``original`` (an argument the grader sent) what the kernel's copy became."""
    if isinstance(original, Tensor) and isinstance(after, Tensor):
        with torch.no_grad():
            if original.shape == after.shape and original.dtype == after.dtype:
                original.copy_(after)
            else:
                original.data = after
    elif isinstance(original, torch.Generator) and isinstance(after, dict):
        if isinstance(after.get("state"), Tensor):
            original.set_state(after["state"])
    elif isinstance(original, nn.Module) and isinstance(after, dict) and after.get(TAG) == "module":
        _copy_module(original, after)
    elif isinstance(original, torch.optim.Optimizer) and isinstance(after, dict):
        if isinstance(after.get("state_dict"), dict):
            original.load_state_dict(after["state_dict"])
    elif isinstance(original, list | tuple) and isinstance(after, list | tuple):
        for item, item_after in zip(original, after, strict=False):
            copy_back(item, item_after)
    elif isinstance(original, dict) and isinstance(after, dict) and TAG not in after:
        for key, item in original.items():
            copy_back(item, after.get(key))


def _copy_module(original: nn.Module, after: dict) -> None:
    params = dict(after.get("parameters", {}))
    for name, param in original.named_parameters():
        if name in params:
            copy_back(param, params[name]["data"])
            grad = params[name].get("grad")
            param.grad = None if grad is None else grad.clone()
    buffers = dict(after.get("buffers", {}))
    for name, buffer in original.named_buffers():
        if name in buffers:
            copy_back(buffer, buffers[name])
