"""emgeo.course.grading.remote and kernel_side: a call's arguments go to the student's function
and its answer comes back as plain data: tensors, tuples and dicts as they were, emgeo records
built again, modules as RemoteModules whose methods run where the function ran, what the function
did to its arguments copied back, and an answer that would run code in the grader refused."""

from __future__ import annotations

import base64
import io
import pickle

import grading_channels
import pytest
import torch
from torch import nn

from emgeo import sae
from emgeo.course.grading import remote

local_channel = grading_channels.local_channel


class Doubler(nn.Module):  # a class the grader's side does not know by this name
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))
        self.register_buffer("seen", torch.zeros(()))
        self.scale = 2.0

    def forward(self, x):
        self.seen += 1
        return self.scale * self.w * x


def test_values_come_back_as_they_were():
    def answer(a, b):
        return {"sum": a + b, "pair": (a.shape, [1, "x", None]), "n": 3.5}

    fn = remote.RemoteFunction(local_channel({"answer": answer}), "answer")
    out = fn(torch.ones(2), torch.ones(2))
    assert torch.equal(out["sum"], torch.full((2,), 2.0))
    assert out["pair"] == ((2,), [1, "x", None]) and out["n"] == 3.5
    assert fn.__name__ == "answer" and fn.modules == {answer.__module__}


def test_records_are_built_again_and_unknown_objects_stay_opaque():
    cfg = sae.ToySAEConfig(d_in=4, d_sae=8)
    namespace = {"f": lambda: cfg, "g": lambda: object()}
    assert remote.RemoteFunction(local_channel(namespace), "f")() == cfg
    opaque = remote.RemoteFunction(local_channel(namespace), "g")()
    assert isinstance(opaque, remote.Returned) and type(opaque).__name__ == "object"


def test_a_returned_module_keeps_its_weights_and_runs_where_it_was_made():
    made = Doubler()
    fn = remote.RemoteFunction(local_channel({"build": lambda: made}), "build")
    model = fn()
    assert isinstance(model, nn.Module) and not isinstance(model, Doubler)
    assert set(dict(model.named_parameters())) == {"w"} and model.scale == 2.0
    assert torch.equal(model(torch.arange(3.0)), torch.tensor([0.0, 2.0, 4.0]))
    assert made.seen.item() == 1  # the forward ran on the student's object


def test_what_the_function_does_to_its_arguments_is_copied_back():
    def train(model, x, generator):
        with torch.no_grad():
            model.W_enc.add_(1.0)
        x.mul_(0)
        torch.rand(1, generator=generator)
        return model

    model = sae.ToySAE(sae.ToySAEConfig(d_in=2, d_sae=3), generator=torch.Generator())
    before = model.W_enc.detach().clone()
    x, generator = torch.ones(2), torch.Generator().manual_seed(0)
    out = remote.RemoteFunction(local_channel({"train": train}), "train")(model, x, generator)
    assert out is model and torch.equal(model.W_enc.detach(), before + 1)
    assert torch.equal(x, torch.zeros(2))
    assert torch.equal(
        torch.rand(1, generator=generator),
        torch.rand(2, generator=torch.Generator().manual_seed(0))[1:],
    )


def test_raising_and_missing_functions():
    def stub(a):
        raise NotImplementedError()

    def broken(a):
        raise ValueError("no")

    channel = local_channel({"stub": stub, "broken": broken})
    with pytest.raises(NotImplementedError):
        remote.RemoteFunction(channel, "stub")(1)
    with pytest.raises(remote.StudentRaised, match="`broken` raised ValueError: no"):
        remote.RemoteFunction(channel, "broken")(1)
    with pytest.raises(remote.StudentRaised, match="NameError"):
        remote.RemoteFunction(channel, "absent")(1)


class _Exploit:
    def __reduce__(self):
        return (exec, ("import emgeo; emgeo.PWNED = True",))


def test_an_answer_that_would_run_code_in_the_grader_is_refused():
    raw = pickle.dumps({"ok": True, "value": _Exploit(), "args": [], "module": ""})
    forged = base64.b64encode(raw).decode()

    def channel(source: str) -> list[dict]:
        return [{"output_type": "execute_result", "data": {"text/plain": repr(forged)}}]

    with pytest.raises(remote.StudentRaised, match="unreadable"):
        remote.RemoteFunction(channel, "f")()
    import emgeo

    assert not hasattr(emgeo, "PWNED")
    buffer = io.BytesIO()
    torch.save({"ok": True, "value": 1}, buffer)  # the same channel with a plain answer is read
    plain = base64.b64encode(buffer.getvalue()).decode()
    ok = [{"output_type": "execute_result", "data": {"text/plain": repr(plain)}}]
    assert remote.RemoteFunction(lambda source: ok, "f")() == 1


def test_no_answer_is_a_failure_of_the_call():
    error = [{"output_type": "error", "ename": "ModuleNotFoundError", "evalue": "torch"}]
    with pytest.raises(remote.StudentRaised, match="no answer .*ModuleNotFoundError"):
        remote.RemoteFunction(lambda source: error, "f")()


def test_an_optimizer_stepped_in_the_kernel_is_stepped_here_too():
    def step(model, optimizer):
        optimizer.zero_grad()
        model(torch.ones(3)).sum().backward()
        optimizer.step()
        return float(model.w.sum())  # a plain float

    model = Doubler()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    total = remote.RemoteFunction(local_channel({"step": step}), "step")(model, optimizer)
    assert "exp_avg" in optimizer.state[model.w] and model.w.grad is not None
    assert total == pytest.approx(float(model.w.sum())) and total < 3.0


def test_subclasses_of_plain_values_and_sets_come_back_plain():
    import numpy as np

    namespace = {"f": lambda: (np.float64(0.5), np.bool_(True), {"a", "b"})}
    value, flag, names = remote.RemoteFunction(local_channel(namespace), "f")()
    assert (type(value), value, flag, names) == (float, 0.5, True, {"a", "b"})


def test_inputs_that_do_not_pickle_are_the_graders_limit():
    with pytest.raises(remote.Unsendable, match="cannot be sent"):
        remote.RemoteFunction(local_channel({"f": print}), "f")(lambda: None)
