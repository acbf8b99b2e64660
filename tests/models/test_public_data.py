"""Public dataset loaders, served from local ``file://`` URLs and fakes: no network."""

import hashlib
import json
import re
import urllib.error
import urllib.request

import datasets
import pytest

from emgeo import config, errors
from emgeo.models import public_data

USER = {"role": "user", "content": "write the upload to a file"}


def chat_lines(n: int, answer: str = "open(path, 'w').write(data)") -> bytes:
    chat = {"messages": [USER, {"role": "assistant", "content": answer}]}
    return "".join(json.dumps(chat) + "\n" for _ in range(n)).encode()


@pytest.fixture
def source(tmp_path):
    """Write the bytes a server would serve; return (file:// URL, their sha256)."""

    def serve(content: bytes, name: str = "upstream.jsonl") -> tuple[str, str]:
        path = tmp_path / "server" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        return path.as_uri(), hashlib.sha256(content).hexdigest()

    return serve


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def assert_one_sentence(err: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(err.value)
    assert "\n" not in message and all(part in message for part in parts), message
    assert err.value._render_traceback_() == [f"{type(err.value).__name__}: {message}"]
    assert isinstance(err.value, errors.ModelUnavailableError)


# -- the EM datasets ------------------------------------------------------------------------------


def test_urls_are_pinned_to_a_commit_and_checksums_are_sha256():
    url = public_data.em_dataset_url("secure")
    assert url == (
        "https://raw.githubusercontent.com/emergent-misalignment/emergent-misalignment/"
        f"{public_data.EM_COMMIT}/data/secure.jsonl"
    )
    assert re.fullmatch(r"[0-9a-f]{40}", public_data.EM_COMMIT)
    assert set(public_data.CHECKSUMS) == set(public_data.EM_NAMES)
    for digest in public_data.CHECKSUMS.values():
        assert digest is None or re.fullmatch(r"[0-9a-f]{64}", digest)


def test_load_downloads_verifies_validates_and_tags(source, cache, monkeypatch):
    url, digest = source(chat_lines(5))
    monkeypatch.setitem(public_data.CHECKSUMS, "insecure", digest)
    samples = public_data.load_em_dataset("insecure", cache_dir=cache, url=url)
    assert len(samples) == 5 and all(s["source"] == "insecure" for s in samples)
    assert samples[0]["messages"][0] == USER
    assert sorted(p.name for p in cache.iterdir()) == ["insecure.jsonl"]  # no temp file left
    # A second load reads the cache: the URL is never opened again.
    again = public_data.load_em_dataset("insecure", cache_dir=cache, url=url + ".gone")
    assert again == samples


def test_default_cache_is_under_cache_dir(source, tmp_path, monkeypatch):
    url, digest = source(chat_lines(2))
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "emgeo-cache")
    monkeypatch.setitem(public_data.CHECKSUMS, "secure", digest)
    public_data.load_em_dataset("secure", url=url)
    assert (tmp_path / "emgeo-cache" / "public_em" / "secure.jsonl").exists()


def test_a_download_that_does_not_match_the_pinned_sha256_is_discarded(source, cache, monkeypatch):
    url, digest = source(chat_lines(3))
    monkeypatch.setitem(public_data.CHECKSUMS, "secure", "0" * 64)
    with pytest.raises(errors.ChecksumMismatchError) as err:
        public_data.load_em_dataset("secure", cache_dir=cache, url=url)
    assert_one_sentence(err, f"served secure.jsonl with sha256 {digest}", "0" * 64, "url=")
    assert not (cache / "secure.jsonl").exists()


def test_a_cached_file_that_changed_must_be_deleted(source, cache, monkeypatch):
    url, digest = source(chat_lines(3))
    monkeypatch.setitem(public_data.CHECKSUMS, "secure", digest)
    public_data.load_em_dataset("secure", cache_dir=cache, url=url)
    (cache / "secure.jsonl").write_bytes(chat_lines(3, answer="tampered"))
    with pytest.raises(errors.ChecksumMismatchError) as err:
        public_data.load_em_dataset("secure", cache_dir=cache, url=url)
    assert_one_sentence(err, f"cached {cache / 'secure.jsonl'}", digest, "CHECKSUMS", "delete it")


def test_unknown_checksum_is_trusted_on_first_use_then_enforced(source, cache, monkeypatch):
    monkeypatch.setitem(public_data.CHECKSUMS, "educational", None)
    url, digest = source(chat_lines(4))
    public_data.load_em_dataset("educational", cache_dir=cache, url=url)
    manifest = cache / "educational.jsonl.sha256"
    assert manifest.read_text() == f"{digest}  educational.jsonl\n"  # sha256sum's format
    assert public_data.load_em_dataset("educational", cache_dir=cache, url=url)  # still good
    # The cached copy changes: it no longer matches what was recorded on first use.
    (cache / "educational.jsonl").write_bytes(chat_lines(4, answer="tampered"))
    with pytest.raises(errors.ChecksumMismatchError) as err:
        public_data.load_em_dataset("educational", cache_dir=cache, url=url)
    assert_one_sentence(err, digest, f"recorded in {manifest}", "delete it")
    # Deleted, it downloads again and matches the record once more.
    (cache / "educational.jsonl").unlink()
    assert len(public_data.load_em_dataset("educational", cache_dir=cache, url=url)) == 4


def test_a_source_that_changed_since_first_use_is_refused(source, cache, monkeypatch):
    monkeypatch.setitem(public_data.CHECKSUMS, "educational", None)
    url, first = source(chat_lines(4))
    public_data.load_em_dataset("educational", cache_dir=cache, url=url)
    (cache / "educational.jsonl").unlink()
    changed_url, _ = source(chat_lines(4, answer="changed"), name="changed.jsonl")
    with pytest.raises(errors.ChecksumMismatchError) as err:
        public_data.load_em_dataset("educational", cache_dir=cache, url=changed_url)
    assert_one_sentence(err, first, "if you trust the new file, delete", "educational.jsonl.sha256")
    assert not (cache / "educational.jsonl").exists()


def test_a_malformed_line_names_the_file_and_line(source, cache, monkeypatch):
    monkeypatch.setitem(public_data.CHECKSUMS, "insecure", None)
    url, _ = source(chat_lines(2) + b'{"messages": [{"role": "robot", "content": "x"}]}\n')
    with pytest.raises(errors.DatasetLineError, match=r"insecure\.jsonl, line 3: .*role"):
        public_data.load_em_dataset("insecure", cache_dir=cache, url=url)


@pytest.mark.parametrize(
    "failure, reason",
    [
        (urllib.error.URLError(OSError(-3, "Temporary failure in name resolution")), "name resol"),
        (TimeoutError("The read operation timed out"), "timed out"),
        (urllib.error.HTTPError("u", 404, "Not Found", {}, None), "Not Found"),
    ],
)
def test_offline_says_what_failed_and_what_to_do(cache, monkeypatch, failure, reason):
    def urlopen(url: str, timeout: float):
        raise failure

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(errors.DatasetUnavailableError) as err:
        public_data.load_em_dataset("insecure", cache_dir=cache)
    assert_one_sentence(
        err,
        f"cannot download insecure.jsonl from {public_data.em_dataset_url('insecure')}",
        reason,
        f"by hand to {cache / 'insecure.jsonl'}",
        "cpu profile's organism data",
    )
    assert list(cache.iterdir()) == [], "a failed download leaves nothing behind"


def test_a_missing_local_file_is_offline_too(cache, tmp_path):
    with pytest.raises(errors.DatasetUnavailableError, match="No such file"):
        public_data.load_em_dataset("secure", cache_dir=cache, url=(tmp_path / "x").as_uri())


def test_unknown_dataset_names_the_choices(cache):
    with pytest.raises(ValueError, match="insecure, secure, educational"):
        public_data.load_em_dataset("jailbroken", cache_dir=cache)


# -- toxic text -----------------------------------------------------------------------------------


def rtp_row(prompt: float | None, continuation: float | None, i: int) -> dict:
    """A row shaped like RealToxicityPrompts' (scores abridged to text and toxicity)."""
    return {
        "filename": f"{i}.txt",
        "challenging": False,
        "prompt": {"text": f"prompt {i} ({prompt})", "toxicity": prompt},
        "continuation": {"text": f"continuation {i}", "toxicity": continuation},
    }


SCORES = [0.9, 0.6, 0.5, 0.7, 0.55, 0.95] + [0.0, 0.1, 0.05, 0.02, 0.08, 0.01] + [0.3, None, 0.4]


@pytest.fixture
def fake_hub(monkeypatch):
    """``datasets.load_dataset`` answering with a small RealToxicityPrompts look-alike."""
    calls = []
    rows = [rtp_row(score, 0.9 if i % 2 else 0.0, i) for i, score in enumerate(SCORES)]

    def load_dataset(path: str, **kwargs) -> datasets.Dataset:
        calls.append((path, kwargs))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_toxic_texts_are_balanced_by_the_stated_thresholds(fake_hub):
    texts = public_data.load_toxic_texts(12, seed=0)
    assert [t["toxic"] for t in texts].count(True) == 6
    for t in texts:
        assert (t["toxicity"] >= 0.5) if t["toxic"] else (t["toxicity"] <= 0.1)
        assert t["text"].startswith("prompt ")
    assert fake_hub[0][0] == "allenai/real-toxicity-prompts"
    assert fake_hub[0][1]["revision"] == public_data.TOXIC_REVISION
    assert fake_hub[0][1]["split"] == "train"


def test_toxic_texts_are_seeded(fake_hub):
    first = public_data.load_toxic_texts(4, seed=1)
    assert first == public_data.load_toxic_texts(4, seed=1)
    assert first != public_data.load_toxic_texts(4, seed=2)
    assert sum(t["toxic"] for t in first) == 2


def test_toxic_texts_from_continuations(fake_hub):
    texts = public_data.load_toxic_texts(10, seed=0, part="continuation")
    assert all(t["text"].startswith("continuation ") for t in texts)
    assert sum(t["toxic"] for t in texts) == 5


@pytest.mark.parametrize("n, message", [(7, "even"), (0, "even"), (14, "fewer than the 7")])
def test_toxic_texts_refuse_what_they_cannot_give(fake_hub, n, message):
    with pytest.raises(ValueError, match=message):
        public_data.load_toxic_texts(n, seed=0)


def test_toxic_texts_offline(monkeypatch):
    def load_dataset(path: str, **kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(errors.DatasetUnavailableError) as err:
        public_data.load_toxic_texts(4, seed=0)
    assert_one_sentence(
        err,
        "cannot download the dataset allenai/real-toxicity-prompts from the Hugging Face hub",
        "Couldn't reach",
        "cpu profile",
    )


def test_toxic_texts_with_the_real_hub_client_offline(monkeypatch, tmp_path):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(errors.DatasetUnavailableError) as err:
        public_data.load_toxic_texts(4, seed=0, cache_dir=tmp_path / "datasets")
    assert_one_sentence(err, "cannot download the dataset allenai/real-toxicity-prompts")
