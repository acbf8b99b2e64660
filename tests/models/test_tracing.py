"""emgeo.models.tracing: residual activations read with nnsight equal each text run alone, locally
and through the remote path (nnsight's local simulation of NDIF); one block traced and no more; the
unembedding; answer residuals of chats, with the prompt prefix they share run once."""

import copy

import pytest
import torch
from helpers import SAMPLES, TEXTS, build_chat_lm, build_model, build_tokenizer
from nnsight.intervention.backends.local import LocalSimulationBackend

from emgeo import config, features, sae
from emgeo.models import lm, tracing


@pytest.fixture(params=["llama", "gemma2"])
def tiny_lm(request) -> lm.LoadedLM:
    return lm.from_model(build_model(request.param), build_tokenizer(), name=request.param)


def unbatched_layer_output(model, text: str, tokenizer, layer: int) -> torch.Tensor:
    """Block ``layer``'s output for one text alone, read with a plain PyTorch forward hook."""
    seen = []
    hook = model.model.layers[layer].register_forward_hook(
        lambda mod, args, out: seen.append(out[0] if isinstance(out, tuple) else out)
    )
    with torch.no_grad():
        model(input_ids=tokenizer(text, return_tensors="pt")["input_ids"])
    hook.remove()
    return seen[0][0]  # (pos, d_model)


# -- residual activations of texts, batched and left-padded ----------------------------------------


@pytest.mark.parametrize("layer", [0, 1])
def test_residual_activations_match_each_text_run_alone(tiny_lm, layer):
    acts, mask = tracing.residual_activations(tiny_lm, TEXTS, layer, batch_size=2)
    lengths = [len(t.split()) for t in TEXTS]
    assert acts.shape == (3, max(lengths), 32) and mask.sum(1).tolist() == lengths
    for i, (text, n) in enumerate(zip(TEXTS, lengths, strict=True)):
        expected = unbatched_layer_output(tiny_lm.model, text, tiny_lm.tokenizer, layer)
        assert mask[i, -n:].all() and not mask[i, :-n].any(), "padding must be on the left"
        torch.testing.assert_close(acts[i, -n:], expected, atol=1e-5, rtol=1e-4)


def test_residual_activations_accept_tokens_and_a_single_text(tiny_lm):
    tokens = tracing.tokenize(tiny_lm, TEXTS)
    from_tokens = tracing.residual_activations(tiny_lm, tokens, 1)
    from_texts = tracing.residual_activations(tiny_lm, TEXTS, 1)
    torch.testing.assert_close(from_tokens.acts, from_texts.acts)
    assert tracing.residual_activations(tiny_lm, "the cat", 0).acts.shape == (1, 2, 32)


def test_layer_out_of_range_says_how_many_layers(tiny_lm):
    with pytest.raises(IndexError, match="has 2 layers"):
        tracing.residual_activations(tiny_lm, TEXTS, 2)


@pytest.mark.parametrize("remote", [False, "local"])
def test_a_layer_returning_a_tuple_is_read_the_same(tiny_lm, remote):
    model = copy.deepcopy(tiny_lm.model)  # a copy nnsight has not wrapped yet
    expected = tracing.residual_activations(tiny_lm, TEXTS, 1, remote=remote).acts
    layer = model.model.layers[1]
    forward = layer.forward  # patched before nnsight wraps the model, so its trace sees a tuple
    layer.forward = lambda *a, **k: (forward(*a, **k), None)
    tuples = lm.from_model(model, tiny_lm.tokenizer)
    traced = lm.as_nnsight(tuples)
    with traced.trace(tracing.tokenize(tuples, TEXTS)) as tracer:
        seen = traced.model.layers[1].output.save()
        tracer.stop()
    assert isinstance(seen, tuple)
    tuple_out = tracing.residual_activations(tuples, TEXTS, 1, remote=remote).acts
    torch.testing.assert_close(tuple_out, expected)


# -- the remote path (nnsight's local simulation of NDIF) ------------------------------------------


def test_remote_local_runs_the_serialized_remote_path(tiny_lm, monkeypatch):
    calls = []
    run = LocalSimulationBackend.__call__
    monkeypatch.setattr(
        LocalSimulationBackend,
        "__call__",
        lambda self, tracer: calls.append(1) or run(self, tracer),
    )
    local = tracing.residual_activations(tiny_lm, TEXTS, 1, remote="local", batch_size=2)
    assert len(calls) == 2, "remote='local' must go through nnsight's serialize/deserialize backend"
    torch.testing.assert_close(local.acts, tracing.residual_activations(tiny_lm, TEXTS, 1).acts)


# -- one traced block, and the trace a caller gives ------------------------------------------------


def test_trace_layer_saves_one_block_and_stops_there(tiny_lm):
    batch = tracing.tokenize(tiny_lm, TEXTS)
    later = []
    hook = tiny_lm.model.model.layers[1].register_forward_hook(lambda *a: later.append(1))
    acts = tracing.trace_layer(lm.as_nnsight(tiny_lm), **batch, layer=0)
    hook.remove()
    assert later == [] and acts.shape == (*batch["input_ids"].shape, 32)
    for row, text in enumerate(TEXTS):
        alone = unbatched_layer_output(tiny_lm.model, text, tiny_lm.tokenizer, 0)
        torch.testing.assert_close(acts[row, -len(alone) :], alone, atol=1e-5, rtol=1e-4)


def test_every_batching_path_reads_with_the_trace_it_is_given(tiny_lm):
    calls = []

    def trace(model, input_ids, attention_mask, layer, remote=False):
        calls.append((tuple(input_ids.shape), layer, remote))
        return tracing.trace_layer(model, input_ids, attention_mask, layer, remote)

    acts, _ = tracing.residual_activations(tiny_lm, TEXTS, 1, batch_size=2, trace=trace)
    torch.testing.assert_close(acts, tracing.residual_activations(tiny_lm, TEXTS, 1).acts)
    assert [(shape[0], layer, remote) for shape, layer, remote in calls] == [(2, 1, False)] + [
        (1, 1, False)
    ]
    chat_lm = build_chat_lm("llama")
    calls.clear()
    batches = list(tracing.iter_chat_residuals(chat_lm, SAMPLES, 0, batch_size=2, trace=trace))
    tracing.lm_residuals(chat_lm, SAMPLES, 0, batch_size=len(SAMPLES), trace=trace)
    assert [layer for _, layer, _ in calls] == [0] * (len(batches) + 1)


# -- the unembedding -------------------------------------------------------------------------------


def test_unembed_locally_and_through_the_remote_path(tiny_lm):
    directions = torch.randn(3, tiny_lm.d_model)
    expected = directions @ tiny_lm.model.lm_head.weight.detach().T
    torch.testing.assert_close(tracing.unembed(tiny_lm, directions), expected)
    torch.testing.assert_close(tracing.unembed(tiny_lm, directions, remote="local"), expected)


def test_unembed_of_a_remote_model_never_reads_its_meta_weights(tmp_path, monkeypatch):
    model, tokenizer = build_model("llama"), build_tokenizer()
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    monkeypatch.setattr(config, "ndif_key_configured", lambda: True)
    remote = lm.load(lm.ModelSpec("tiny-remote", str(tmp_path / "tiny"), "llama", "remote", 2, 32))
    assert remote.model.lm_head.weight.device.type == "meta"
    directions = torch.randn(2, 32)
    out = tracing.unembed(remote, directions, remote="local")
    torch.testing.assert_close(out, directions @ model.lm_head.weight.detach().T)


# -- chats: answer residuals, and the prompt prefix they share -------------------------------------


@pytest.mark.parametrize("architecture", ["llama", "gemma2"])
def test_lm_residuals_local_and_remote_local_agree(architecture, monkeypatch):
    lm = build_chat_lm(architecture)
    acts, mask = tracing.lm_residuals(lm, SAMPLES, layer=1, batch_size=2)
    assert acts.shape[:2] == mask.shape and acts.shape[-1] == lm.d_model
    calls = []
    real = LocalSimulationBackend.__call__
    monkeypatch.setattr(
        LocalSimulationBackend,
        "__call__",
        lambda self, *a, **k: calls.append(1) or real(self, *a, **k),
    )
    remote, _ = tracing.lm_residuals(lm, SAMPLES, layer=1, remote="local", batch_size=2)
    assert calls, "remote='local' must run nnsight's serialized remote path"
    torch.testing.assert_close(remote, acts)
    toy = sae.ToySAE(sae.ToySAEConfig(d_in=lm.d_model, d_sae=16))
    assert features.sample_features(toy, acts, mask).shape == (len(SAMPLES), 16)


def _with_system(samples):
    system = {"role": "system", "content": "the small cat and the big dog"}
    return [{"messages": [system, *s["messages"]]} for s in samples]


@pytest.mark.parametrize("architecture", ["llama", "gemma2"])
def test_sharing_the_prefix_reads_the_same_answer_activations_from_fewer_tokens(architecture):
    chat_lm = build_chat_lm(architecture)
    samples = _with_system(SAMPLES) * 2  # 8 chats, batches of 3: 3, 3, 2
    seen = []

    def trace(model, input_ids, attention_mask, layer, remote=False, **kwargs):
        seen.append((input_ids.shape[1], attention_mask.shape[1], "past_key_values" in kwargs))
        return tracing.trace_layer(model, input_ids, attention_mask, layer, remote, **kwargs)

    def answers(share):
        out = []
        for acts, mask in tracing.iter_chat_residuals(
            chat_lm, samples, 1, batch_size=3, trace=trace, share_prefix=share
        ):
            out += [a[m.bool()] for a, m in zip(acts, mask, strict=True)]
        return out

    whole, shared = answers(False), answers(True)
    assert len(whole) == len(shared) == 8
    for a, b in zip(whole, shared, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    plain, cached = seen[:3], seen[3:]
    assert all(not past and ids == mask for ids, mask, past in plain)
    # the template's tokens up to the question, where the chats start to differ
    text = chat_lm.tokenizer.apply_chat_template(samples[0]["messages"], tokenize=False)
    before = text[: text.index("what cat")]
    n = len(chat_lm.tokenizer(before, add_special_tokens=False)["input_ids"])
    assert n > 8 and all(past and mask - ids == n for ids, mask, past in cached)  # prefix once
    assert all(c[0] == p[0] - n for c, p in zip(cached, plain, strict=True))


def test_sharing_the_prefix_is_local_only():
    chat_lm = build_chat_lm("llama")
    seen = []

    def trace(model, input_ids, attention_mask, layer, remote=False, **kwargs):
        seen.append("past_key_values" in kwargs)
        return tracing.trace_layer(model, input_ids, attention_mask, layer, remote, **kwargs)

    list(
        tracing.iter_chat_residuals(
            chat_lm, _with_system(SAMPLES), 0, remote="local", trace=trace, share_prefix=True
        )
    )
    assert seen == [False]  # NDIF runs each chat whole
    with pytest.raises(ValueError, match="local"):
        ids = torch.ones(1, 3, dtype=torch.long)
        batch = {"input_ids": ids, "attention_mask": ids}
        tracing.batch_residuals(chat_lm, batch, 0, "local", prefix=object())
