"""NDIF preflight and error translation, against a fake NDIF: no test here touches the network.

The preflight tests answer nnsight-style ``GET`` requests from a routing table. The translation
tests run a real ``model.trace(..., remote=True)`` through nnsight's own RemoteBackend, with its
HTTP client and websocket pointed at a fake server, so the exceptions are the ones nnsight raises.
"""

import importlib.metadata
import json

import httpx
import pytest
import torch
import websocket
from nnsight import CONFIG, TransformersModel
from nnsight.intervention.backends.remote import RemoteError
from nnsight.modeling import huggingface as nnsight_hf
from nnsight.schema.response import ResponseModel, Status
from tokenizers import Tokenizer, models
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from emgeo import errors
from emgeo.models import ndif

HOST = "https://ndif.test"
LLAMA = "meta-llama/Llama-3.1-8B"
CLIENT = ndif.client_nnsight_version()
TORCH = importlib.metadata.version("torch")


def deployment(repo_id: str, state: str = "RUNNING", revision: str = "main") -> dict:
    """One replica as NDIF's raw ``/status`` lists it (the fields nnsight.status() reads)."""
    return {
        "repo_id": repo_id,
        "revision": revision,
        "deployment_level": "HOT",
        "application_state": state,
        "model_key": f'nnsight.modeling.transformers.TransformersModel:{{"repo_id": "{repo_id}"}}',
    }


STATUS = {
    "deployments": {
        "llama-8b-1": deployment(LLAMA, state="DEPLOYING"),  # a spare replica still starting
        "llama-8b-2": deployment(LLAMA),
        "gpt2": deployment("openai-community/gpt2"),
        "llama-70b": deployment("meta-llama/Llama-3.1-70B", state="DEPLOYING"),
        "llama-405b-old": deployment("meta-llama/Llama-3.1-405B", revision="abc123"),
    }
}
WHOAMI = {"email": "learner@example.org", "tags": []}
ENV = {"python_version": "3.11.9 (main)", "packages": {"nnsight": CLIENT, "torch": "2.8.0"}}


@pytest.fixture
def ndif_config(monkeypatch):
    """nnsight's config pointed at a fake host, with a key, and no live status display."""
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(CONFIG.API, "HOST", HOST)
    monkeypatch.setattr(CONFIG.API, "APIKEY", "key-from-config")
    monkeypatch.setattr(CONFIG.APP, "REMOTE_LOGGING", False)


@pytest.fixture
def serve(monkeypatch, ndif_config):
    """Answer ``httpx.get`` from a table: path -> (status, json) or an exception to raise."""
    routes = {"/status": (200, STATUS), "/whoami": (200, WHOAMI), "/env": (200, ENV)}
    seen: list[tuple[str, dict | None]] = []

    def get(url: str, timeout: float, headers: dict | None = None) -> httpx.Response:
        path = url.removeprefix(HOST)
        seen.append((path, headers))
        answer = routes[path]
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return httpx.Response(status, json=body, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", get)
    return routes, seen


def assert_one_sentence(err: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(err.value)
    assert "\n" not in message and all(part in message for part in parts), message
    assert err.value._render_traceback_() == [f"RemoteUnavailableError: {message}"]
    assert isinstance(err.value, errors.ModelUnavailableError)


# -- preflight ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [LLAMA, "llama-3.1-8b"])
def test_preflight_passes_and_reports_what_it_found(serve, name):
    status = ndif.preflight(name)
    assert status.model_id == LLAMA and status.host == HOST
    assert status.running == (LLAMA, "openai-community/gpt2")  # healthiest replica wins
    assert status.client_version == status.server_version == CLIENT
    assert status.user == "learner@example.org"
    assert status.differences == (("torch", TORCH, "2.8.0"),)  # ENV's torch; no transformers
    assert str(status) == (
        f"NDIF at {HOST}: {LLAMA} is running; nnsight {CLIENT} here, {CLIENT} on the server; "
        f"also different there: torch {TORCH} here, 2.8.0 on the server"
    )
    _, seen = serve
    assert [path for path, _ in seen] == ["/status", "/whoami", "/env"]
    assert seen[1][1] == {"ndif-api-key": "key-from-config"}


def test_preflight_hands_a_key_from_the_environment_to_nnsight(serve, monkeypatch):
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)  # set after nnsight read its config
    monkeypatch.setenv("NDIF_API_KEY", "key-from-env")
    ndif.preflight(LLAMA)
    assert CONFIG.API.APIKEY == "key-from-env", "nnsight's remote backend reads only CONFIG"
    assert serve[1][1][1] == {"ndif-api-key": "key-from-env"}


def test_preflight_without_a_key_asks_for_one_before_any_request(serve, monkeypatch):
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    with pytest.raises(errors.RemoteUnavailableError) as err:
        ndif.preflight(LLAMA)
    assert_one_sentence(
        err, "no NDIF API key", "https://login.ndif.us", "NDIF_API_KEY", "set_default_api_key"
    )
    assert serve[1] == []


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("[Errno -3] Temporary failure in name resolution"),
        httpx.ConnectTimeout("timed out"),
        (503, {"detail": "Service Unavailable"}),
    ],
)
def test_preflight_when_the_service_does_not_answer(serve, failure):
    serve[0]["/status"] = failure
    with pytest.raises(errors.RemoteUnavailableError) as err:
        ndif.preflight(LLAMA)
    assert_one_sentence(err, f"cannot reach the NDIF service at {HOST}", "cpu profile")


@pytest.mark.parametrize("answer", [(200, {"email": None, "tags": []}), (401, {"detail": "no"})])
def test_preflight_with_a_key_ndif_does_not_know(serve, answer):
    serve[0]["/whoami"] = answer
    with pytest.raises(errors.RemoteUnavailableError) as err:
        ndif.preflight(LLAMA)
    assert_one_sentence(err, "does not recognise the configured API key", "login.ndif.us")


def test_preflight_on_a_service_without_whoami_or_env(serve):
    serve[0]["/whoami"] = (404, {"detail": "Not Found"})
    serve[0]["/env"] = (404, {"detail": "Not Found"})
    status = ndif.preflight(LLAMA)
    assert status.user is None and status.server_version is None
    assert "unknown on the server" in str(status)
    assert ndif.preflight(LLAMA, verify_key=False).user is None


@pytest.mark.parametrize(
    "model, where",
    [
        ("meta-llama/Llama-3.1-405B", "is not deployed on NDIF right now"),  # other revision only
        ("meta-llama/Llama-3.1-70B", "is DEPLOYING on NDIF, not RUNNING"),
        ("google/gemma-2-2b", "is not deployed on NDIF right now"),
    ],
)
def test_preflight_names_the_missing_model_and_what_runs(serve, model, where):
    with pytest.raises(errors.RemoteUnavailableError) as err:
        ndif.preflight(model)
    assert_one_sentence(
        err, f"{model} {where}", f"NDIF runs {LLAMA}, openai-community/gpt2", "cpu profile"
    )


def test_preflight_when_nothing_runs(serve):
    serve[0]["/status"] = (200, {"deployments": {}})
    with pytest.raises(errors.RemoteUnavailableError) as err:
        ndif.preflight(LLAMA)
    assert_one_sentence(err, f"{LLAMA} is not deployed", "NDIF runs no model right now")


def test_preflight_gives_both_versions_and_the_exact_fix(serve):
    serve[0]["/env"] = (200, {"packages": {"nnsight": "0.9.2"}})
    with pytest.raises(errors.RemoteUnavailableError) as err:
        ndif.preflight(LLAMA)
    assert_one_sentence(
        err,
        f"NDIF runs nnsight 0.9.2 but this environment has nnsight {CLIENT}",
        "`pip install nnsight==0.9.2`",
    )


def test_versions_compare_as_versions():
    assert ndif._same_version("0.8.1", "0.8.1.0") and not ndif._same_version("0.8.1", "0.8.10")
    assert ndif._same_version("2.8.0+cu126", "2.8.0"), "a local build label is the same release"


def test_preflight_reports_the_servers_transformers_and_torch_when_they_differ(serve):
    here = importlib.metadata.version("transformers")
    serve[0]["/env"] = (
        200,
        {
            "packages": {
                "nnsight": CLIENT,
                "transformers": "4.57.1",
                "torch": TORCH.split("+")[0] + "+cu128",  # the same torch, built for CUDA
            }
        },
    )
    status = ndif.preflight(LLAMA)
    assert status.differences == (("transformers", here, "4.57.1"),)
    assert f"transformers {here} here, 4.57.1 on the server" in str(status)


# -- translating the errors of a real remote trace ----------------------------------------------


class FakeSocket:
    """NDIF's ``/subscribe`` websocket: a session id, then the job's status updates."""

    def __init__(self, updates: list[str]) -> None:
        self.messages = [json.dumps({"session_id": "session"}), *updates]

    def recv(self) -> str:
        if not self.messages:
            raise AssertionError("the client waited for an update the fake server never sends")
        return self.messages.pop(0)

    def settimeout(self, seconds: float) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def fake_ndif(monkeypatch, ndif_config):
    """Point nnsight's RemoteBackend at a fake NDIF; the test sets how it answers."""
    server = {
        "post": (200, ResponseModel(id="job", status=Status.RECEIVED).model_dump()),
        "updates": [],
        "connect": None,
        "headers": [],  # the header of each websocket connection
        "requests": [],  # the path of each HTTP request
        "sockets": [],  # each websocket, with the messages it has not yet sent
    }

    def answer_post(request: httpx.Request) -> httpx.Response:
        server["requests"].append(request.url.path)
        assert request.url.path == "/request"
        if isinstance(server["post"], Exception):
            raise server["post"]
        status, body = server["post"]
        return httpx.Response(status, json=body)

    def connect(url: str, header: dict | None = None) -> FakeSocket:
        server["headers"].append(header)
        if server["connect"] is not None:
            raise server["connect"]
        server["sockets"].append(FakeSocket(server["updates"]))
        return server["sockets"][-1]

    client = httpx.Client
    transport = httpx.MockTransport(answer_post)
    monkeypatch.setattr(httpx, "Client", lambda **kwargs: client(transport=transport, **kwargs))
    monkeypatch.setattr(websocket, "create_connection", connect)
    return server


def job_error(description: str) -> str:
    return ResponseModel(id="job", status=Status.ERROR, description=description).model_dump_json()


@pytest.fixture
def tiny(monkeypatch) -> TransformersModel:
    """A one-block Llama wrapped for nnsight, whose hub id is known without asking the hub."""
    cfg = LlamaConfig(
        vocab_size=8,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=4,
        max_position_embeddings=8,
    )
    vocab = Tokenizer(models.WordLevel({"<unk>": 0, "hi": 1}, unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=vocab, unk_token="<unk>", pad_token="<unk>"
    )
    model = TransformersModel(LlamaForCausalLM(cfg), tokenizer=tokenizer)
    monkeypatch.setitem(nnsight_hf._ID_CACHE, model.repo_id, LLAMA)
    return model


def remote_trace(model: TransformersModel) -> None:
    with ndif.translate_remote_errors(LLAMA):
        with model.trace({"input_ids": torch.tensor([[1, 1]])}, remote=True):
            model.model.layers[0].output.save()


KEY_DETAIL = "Missing or invalid API key. Please visit https://login.ndif.us/ to create a new one."
VERSION_DETAIL = (
    f"Client nnsight version {CLIENT} is incompatible with the server nnsight version. The "
    "minimum supported version is 0.9.0. Please update nnsight to the latest version: "
    "`pip install --upgrade nnsight`"
)
NOT_DEDICATED = (
    "Model is not dedicated and hotswapping is not supported for this API key. See "
    "https://nnsight.net/status/ for a list of scheduled models."
)


@pytest.mark.parametrize(
    "post, updates, parts",
    [
        ((401, {"detail": KEY_DETAIL}), [], ["does not recognise", "login.ndif.us"]),
        (
            (400, {"detail": VERSION_DETAIL}),
            [],
            [
                f"NDIF needs nnsight 0.9.0 or newer but this environment has {CLIENT}",
                "`pip install nnsight==0.9.0`",
            ],
        ),
        (None, [job_error(NOT_DEDICATED)], [f"{LLAMA} is not deployed on NDIF", "nnsight.net"]),
        (
            None,
            [job_error("Job took longer than timeout: 3600 seconds")],
            ["ran past the server's 3600-second limit", "batch_size"],
        ),
        (httpx.ReadTimeout("The read operation timed out"), [], ["did not answer in time"]),
        (
            (503, {"detail": "Service temporarily unavailable: compute backend is reconnecting."}),
            [],
            [f"cannot reach the NDIF service at {HOST}", "cpu profile"],
        ),
    ],
    ids=["bad-key", "old-nnsight", "not-deployed", "job-timeout", "client-timeout", "503"],
)
def test_remote_failures_become_one_sentence(fake_ndif, tiny, post, updates, parts):
    if post is not None:
        fake_ndif["post"] = post
    fake_ndif["updates"] = updates
    with pytest.raises(errors.RemoteUnavailableError) as err:
        remote_trace(tiny)
    assert_one_sentence(err, *parts)
    assert isinstance(err.value.__cause__, RemoteError), "the original stays as the cause"
    assert fake_ndif["headers"] == [{"ndif-api-key": "key-from-config"}]


def test_a_trace_without_any_key_asks_for_one(fake_ndif, tiny, monkeypatch):
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    fake_ndif["post"] = (401, {"detail": KEY_DETAIL})
    with pytest.raises(errors.RemoteUnavailableError) as err:
        remote_trace(tiny)
    assert_one_sentence(err, "no NDIF API key is set", "login.ndif.us", "NDIF_API_KEY")
    assert fake_ndif["headers"] == [None]


@pytest.mark.parametrize(
    "failure, parts",
    [
        (ConnectionRefusedError(111, "Connection refused"), ["cannot reach the NDIF service"]),
        (websocket.WebSocketBadStatusException("Handshake status %d", 401), ["API key"]),
    ],
)
def test_a_failed_subscription_becomes_one_sentence(fake_ndif, tiny, failure, parts):
    fake_ndif["connect"] = failure
    with pytest.raises(errors.RemoteUnavailableError) as err:
        remote_trace(tiny)
    assert_one_sentence(err, *parts)


def test_unknown_remote_errors_pass_through_unchanged(fake_ndif, tiny):
    fake_ndif["updates"] = [job_error("NameError: name 'oops' is not defined")]
    with pytest.raises(RemoteError, match="NameError: name 'oops'") as err:
        remote_trace(tiny)
    assert type(err.value) is RemoteError


def test_other_exceptions_pass_through_unchanged():
    with pytest.raises(ValueError, match="not about NDIF"):
        with ndif.translate_remote_errors(LLAMA):
            raise ValueError("not about NDIF")


def test_a_completed_job_is_untouched(fake_ndif, tiny):
    """The fake server itself works: a job that fails nowhere is sent once, with the key, read to
    its last update, and raises nothing to translate."""
    fake_ndif["updates"] = [
        ResponseModel(id="job", status=Status.COMPLETED, data=None).model_dump_json()
    ]
    remote_trace(tiny)
    assert fake_ndif["requests"] == ["/request"]
    assert fake_ndif["headers"] == [{"ndif-api-key": "key-from-config"}]
    assert [socket.messages for socket in fake_ndif["sockets"]] == [[]], "an update was not read"
