"""The half of a graded call that runs in the student's kernel: sent as source with every call.

The grader (:mod:`emgeo.course.grading.remote`) sends this file's text with one request: the
name of the student's function (or a method of an object an earlier call returned), and its
arguments, saved by ``torch.save`` and base64-encoded. :func:`_emgeo_grading_call` runs the
function and answers, as the cell's value, with what it returned and what became of its
arguments, encoded as plain data only (tensors, numbers, strings, lists, tuples, dicts and
tagged dicts), so that the grader reads it with ``torch.load(weights_only=True)`` and nothing the
kernel sends can run code in the grader. Whatever the student's code does to this machinery
changes only those answers. It imports no part of the course, which the student may have changed.
"""

from __future__ import annotations

import base64
import dataclasses
import io

import torch

TAG = "__emgeo_grading__"
_PLAIN = (bool, int, float, str, type(None))
# Modules returned to the grader, by handle, for its later calls: this source runs again in the
# same namespace with every call, and keeps what the calls before it left there.
_OBJECTS: dict[int, object] = globals().get("_OBJECTS", {})


def _type_name(value: object) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _plain(value: bool | int | float | str) -> bool | int | float | str:
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    raise TypeError(value)


def _module(value: torch.nn.Module) -> dict:
    """A module as its parameters (with their gradients), buffers and plain attributes; the
    module stays here, under a handle, for the grader's calls of its methods."""
    _OBJECTS[id(value)] = value
    parameters = {
        name: {"data": p.detach().clone(), "grad": None if p.grad is None else p.grad.clone()}
        for name, p in value.named_parameters()
    }
    buffers = {name: b.detach().clone() for name, b in value.named_buffers()}
    attributes = {
        k: _encode(v)
        for k, v in vars(value).items()
        if not k.startswith("_") and (isinstance(v, _PLAIN) or dataclasses.is_dataclass(v))
    }
    return {
        TAG: "module",
        "handle": id(value),
        "type": _type_name(value),
        "parameters": parameters,
        "buffers": buffers,
        "attributes": attributes,
    }


def _record(value: object, kind: str, fields: dict) -> dict:
    encoded = {k: _encode(v) for k, v in fields.items()}
    return {TAG: "record", "kind": kind, "type": _type_name(value), "fields": encoded}


def _encode(value: object) -> object:
    """``value`` as plain data that ``torch.load(weights_only=True)`` reads."""
    if isinstance(value, _PLAIN):  # a numpy float or a str enum as the plain value it is
        return value if type(value) in _PLAIN else _plain(value)
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, torch.Generator):
        return {TAG: "generator", "state": value.get_state()}
    if isinstance(value, torch.nn.Module):
        return _module(value)
    if isinstance(value, torch.optim.Optimizer):  # its state: what its steps left in it
        return {TAG: "optimizer", "state_dict": _encode(value.state_dict())}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return _record(value, "namedtuple", value._asdict())
    if isinstance(value, list | tuple):
        items = [_encode(item) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, set | frozenset):
        return {TAG: "set", "items": [_encode(item) for item in value]}
    if isinstance(value, dict) and all(isinstance(k, str | int) for k in value):
        return {k: _encode(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _record(value, "dataclass", fields)
    if type(value).__module__ == "numpy":
        return _encode(value.tolist())
    if callable(value) and not isinstance(value, type):  # a function it returned: it stays here
        _OBJECTS[id(value)] = value
        return {TAG: "callable", "handle": id(value), "type": _type_name(value)}
    return {TAG: "opaque", "type": _type_name(value)}


def _answer(reply: dict) -> str:
    buffer = io.BytesIO()
    torch.save(reply, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _emgeo_grading_call(request_b64: str, namespace: dict) -> str:
    """Run one request in the student's ``namespace``; the answer, base64-encoded."""
    request = torch.load(io.BytesIO(base64.b64decode(request_b64)), weights_only=False)
    try:
        if request["handle"] is None:
            fn = namespace[request["name"]]
        else:
            fn = getattr(_OBJECTS[request["handle"]], request["name"])
    except KeyError:
        return _answer({"ok": False, "ename": "NameError", "evalue": "it is not defined"})
    args, kwargs = request["args"], request["kwargs"]
    try:
        out = fn(*args, **kwargs)
    except Exception as err:
        return _answer({"ok": False, "ename": type(err).__name__, "evalue": str(err)})
    same = [i for i, arg in enumerate(args) if out is arg and not isinstance(out, _PLAIN)]
    return _answer(
        {
            "ok": True,
            "value": {TAG: "argument", "index": same[0]} if same else _encode(out),
            "args": [_encode(arg) for arg in args],
            "module": str(getattr(fn, "__module__", "") or ""),
        }
    )
