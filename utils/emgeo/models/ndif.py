"""NDIF remote execution: a preflight check before tracing, and one-sentence errors when it fails.

The remote profile runs Llama-3.1-8B on NDIF through ``model.trace(..., remote=True)``. Four
things must hold for that to work, and :func:`preflight` checks each of them before any trace
is sent, turning a failure into a :class:`RemoteUnavailableError` that says what to do:

1. an NDIF API key is configured (``NDIF_API_KEY`` or ``nnsight.CONFIG.set_default_api_key``);
2. the NDIF service answers (``GET /status``, what ``nnsight.status()`` reads);
3. the model is deployed and RUNNING there (the same test as ``nnsight.is_model_running``);
4. this environment's nnsight is the version the server runs (``GET /env``, what
   ``nnsight.compare()`` reads).

``/env`` lists the server's Python and its packages by import name (nnsight's
``get_remote_env``); besides nnsight, the preflight reports when the server's ``transformers`` or
``torch`` differ from this environment's (nnsight counts those three as critical). They are
reported, not refused: the server's transformers decides what a module returns (a decoder
layer's output is a tensor or a tuple), which :mod:`emgeo.models.tracing` reads either way.
Under stand-ins (``EMGEO_STANDINS=tiny``) nothing is contacted.

With ``verify_key=True`` it also asks ``GET /whoami`` (what ``nnsight.whoami()`` reads) whether
NDIF recognises the key. Wrap the traces themselves in :func:`translate_remote_errors`: nnsight
reports every remote failure as one ``RemoteError`` whose message is the server's text, and the
wrapper turns the common ones (bad key, model not deployed, nnsight too old, job timeout,
service unreachable) into one sentence each. nnsight 0.8.1 sets no client-side limit on how long a
blocking trace waits in NDIF's queue: a job ends only when the server answers (COMPLETED, or
ERROR such as its execution timeout), or when submitting it fails (10 s to connect, 600 s to
read).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import websocket
from nnsight import CONFIG
from nnsight.intervention.backends.remote import RemoteError
from packaging.version import InvalidVersion, Version

from emgeo import config
from emgeo.errors import RemoteUnavailableError, first_line
from emgeo.models import standins
from emgeo.models.lm import get_spec

CPU_FIX = f"or {config.CPU_CHOICE}"
_STATE_RANK = {"RUNNING": 0, "DEPLOYING": 1, "NOT_STARTED": 2, "UNHEALTHY": 3}
COMPARED = ("transformers", "torch")  # besides nnsight: reported when they differ


@dataclass(frozen=True)
class RemoteStatus:
    """What :func:`preflight` found: the model runs on NDIF and this client can reach it."""

    model_id: str
    host: str
    running: tuple[str, ...]  # every repo id RUNNING on NDIF, sorted
    client_version: str
    server_version: str | None  # None when the server did not report its nnsight version
    user: str | None = None  # the account NDIF tied the key to, when it was asked
    # (package, here, on the server) for each of COMPARED whose versions differ
    differences: tuple[tuple[str, str, str], ...] = ()

    def __str__(self) -> str:
        server = self.server_version or "unknown"
        text = (
            f"NDIF at {self.host}: {self.model_id} is running; "
            f"nnsight {self.client_version} here, {server} on the server"
        )
        if self.differences:
            text += "; also different there: " + ", ".join(
                f"{pkg} {here} here, {there} on the server" for pkg, here, there in self.differences
            )
        return text

    def _repr_pretty_(self, p, cycle) -> None:  # IPython display
        p.text(str(self))


# -- preflight ------------------------------------------------------------------------------------


def preflight(model_id: str, timeout: float = 30.0, verify_key: bool = True) -> RemoteStatus:
    """Check that ``model_id`` can run on NDIF from here; raise RemoteUnavailableError if not.

    ``model_id`` is a hub id (``meta-llama/Llama-3.1-8B``) or a short name from
    ``emgeo.models.lm.MODELS``. ``timeout`` bounds each request to NDIF, in seconds. A key set in
    ``NDIF_API_KEY`` after nnsight was imported is handed to ``nnsight.CONFIG.API.APIKEY`` (in
    memory, never saved), because nnsight's remote backend reads only that.
    """
    repo_id = _repo_id(model_id)
    if standins.active():
        return RemoteStatus(repo_id, "stand-in (EMGEO_STANDINS)", (repo_id,), *(2 * ("local",)))
    key = _api_key()
    states = _model_states(_service_status(timeout))
    user = _whoami(key, timeout) if verify_key else None
    running = tuple(sorted(r for r, state in states.items() if state == "RUNNING"))
    if repo_id not in running:
        raise RemoteUnavailableError(_not_running_message(repo_id, states.get(repo_id), running))
    packages = _server_packages(timeout)
    client, server = client_nnsight_version(), packages.get("nnsight")
    if server is not None and not _same_version(client, server):
        raise RemoteUnavailableError(
            f"NDIF runs nnsight {server} but this environment has nnsight {client}: run "
            f"`pip install nnsight=={server}` and restart the kernel."
        )
    return RemoteStatus(
        repo_id, CONFIG.API.HOST, running, client, server, user, _differences(packages)
    )


def client_nnsight_version() -> str:
    """The installed nnsight version (what nnsight sends NDIF in its ``nnsight-version`` header)."""
    return importlib.metadata.version("nnsight")


def _repo_id(model_id: str) -> str:
    try:
        return get_spec(model_id).hf_id
    except ValueError:  # not in the registry: take it as a hub id
        return model_id


def _api_key() -> str:
    """The configured NDIF key (environment first, as nnsight's config does), synced to CONFIG."""
    if not config.ndif_key_configured():
        raise RemoteUnavailableError(_no_key_message())
    key = os.environ.get("NDIF_API_KEY") or CONFIG.API.APIKEY
    if CONFIG.API.APIKEY != key:
        CONFIG.API.APIKEY = key
    return key


def _get(path: str, timeout: float, api_key: str | None = None) -> dict:
    """GET an NDIF endpoint as JSON (the request ``nnsight.ndif`` makes, with our timeout)."""
    headers = {"ndif-api-key": api_key} if api_key else None
    response = httpx.get(f"{CONFIG.API.HOST}{path}", timeout=timeout, headers=headers)
    response.raise_for_status()
    return response.json()


def _service_status(timeout: float) -> dict:
    try:
        return _get("/status", timeout)
    except httpx.HTTPError as err:  # cannot connect, timed out, or an HTTP error status
        raise RemoteUnavailableError(
            f"cannot reach the NDIF service at {CONFIG.API.HOST} ({first_line(err, 200)}): check "
            f"your connection and https://nnsight.net/status/, {CPU_FIX}."
        ) from err


def _model_states(status: dict) -> dict[str, str]:
    """Repo id -> its healthiest application state over the replicas at revision ``main``."""
    states: dict[str, str] = {}
    for name, deployment in status.get("deployments", {}).items():
        if (deployment.get("revision") or "main") != "main":
            continue  # nnsight's remote models ask for revision main
        repo_id = deployment.get("repo_id", name)
        state = deployment.get("application_state", "UNHEALTHY")
        held = states.get(repo_id)
        if held is None or _STATE_RANK.get(state, 9) < _STATE_RANK.get(held, 9):
            states[repo_id] = state
    return states


def _not_running_message(repo_id: str, state: str | None, running: tuple[str, ...]) -> str:
    where = f"is {state} on NDIF, not RUNNING" if state else "is not deployed on NDIF right now"
    others = f"NDIF runs {', '.join(running)}" if running else "NDIF runs no model right now"
    return (
        f"{repo_id} {where} ({others}): pick a running model, try again later, or run the cpu "
        "profile (unset EMGEO_PROFILE)."
    )


def _whoami(key: str, timeout: float) -> str | None:
    """The account NDIF ties ``key`` to; None when the service cannot say (older servers)."""
    try:
        identity = _get("/whoami", timeout, api_key=key)
    except httpx.HTTPStatusError as err:
        if err.response.status_code in (401, 403):
            raise RemoteUnavailableError(_bad_key_message()) from err
        return None  # e.g. 404: a service without /whoami
    except httpx.HTTPError:
        return None  # /status answered a moment ago; the key is checked again on submission
    if not identity.get("email"):
        raise RemoteUnavailableError(_bad_key_message())
    return identity["email"]


def _key_fix() -> str:
    """How to set the key where the learner is (Colab's Secrets, or the shell), or in nnsight."""
    return f"{config.key_fix('NDIF_API_KEY')} (or call nnsight.CONFIG.set_default_api_key(...))"


def _no_key_message() -> str:
    return (
        f"no NDIF API key is set: get one at https://login.ndif.us, then {_key_fix()}; {CPU_FIX}."
    )


def _bad_key_message() -> str:
    return (
        "NDIF does not recognise the configured API key: check it (or make a new one) at "
        f"https://login.ndif.us, then {_key_fix()}."
    )


def _server_packages(timeout: float) -> dict[str, str]:
    """The server's package versions by import name (``GET /env``); empty from an older
    service without /env (NDIF still checks the nnsight version on submission)."""
    try:
        env = _get("/env", max(timeout, 60.0))  # nnsight itself waits up to 60 s for /env
    except httpx.HTTPError:
        return {}
    return {name: str(v) for name, v in env.get("packages", {}).items() if v}


def _differences(server: dict[str, str]) -> tuple[tuple[str, str, str], ...]:
    """(package, here, there) for the COMPARED packages whose versions differ."""
    found = []
    for name in COMPARED:
        there = server.get(name)
        try:
            here = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            here = "not installed"
        if there is not None and not _same_version(here, there):
            found.append((name, here, there))
    return tuple(found)


def _same_version(client: str, server: str) -> bool:
    try:
        return Version(Version(client).public) == Version(Version(server).public)  # +cpu, +cu126
    except InvalidVersion:
        return client.strip() == server.strip()


# -- errors raised while a remote trace runs -----------------------------------------------------

_NOT_DEPLOYED = (
    "hotswapping is not supported",
    "cannot be accomodated",  # (sic) NDIF's spelling
    "cannot be accommodated",
    "deployment evicted",
    "not deployed",
)
_UNREACHABLE = ("service temporarily unavailable", "queue service is not ready")


@contextlib.contextmanager
def translate_remote_errors(model_id: str | None = None) -> Iterator[None]:
    """Turn the common NDIF failures of a remote trace into one-sentence RemoteUnavailableErrors.

    Use it around the trace::

        with translate_remote_errors("meta-llama/Llama-3.1-8B"):
            with model.trace(batch, remote=True):
                acts = model.model.layers[layer].output.save()

    A bad or missing key, a model NDIF does not run, an nnsight NDIF no longer
    accepts, a job that ran past the server's time limit, and a service that cannot be reached
    are translated; any other exception passes through unchanged.
    """
    try:
        yield
    except RemoteError as err:
        message = _remote_error_message(err, model_id or "the model")
        if message is None:
            raise
        raise RemoteUnavailableError(message) from err
    except (websocket.WebSocketException, ConnectionError, TimeoutError) as err:
        status = getattr(err, "status_code", None)  # the /subscribe handshake's HTTP status
        message = _key_message() if status in (401, 403) else _unreachable_message(err)
        raise RemoteUnavailableError(message) from err


def _remote_error_message(err: RemoteError, model: str) -> str | None:
    """One sentence for a RemoteError nnsight raised, or None when it is not a known failure."""
    said = first_line(err, 200).removeprefix("Failed to send request: ")
    text, cause = said.lower(), err.__cause__
    status = cause.response.status_code if isinstance(cause, httpx.HTTPStatusError) else None
    if any(marker in text for marker in _NOT_DEPLOYED):  # before the key: it names the key too
        return (
            f"{model} is not deployed on NDIF for this key right now (NDIF said: {said}): see "
            "which models run with emgeo.models.ndif.preflight(...) or at "
            "https://nnsight.net/status/, "
            "or run the cpu profile (unset EMGEO_PROFILE)."
        )
    if "api key" in text or status in (401, 403):
        return _key_message()
    if "nnsight version" in text or "version of nnsight" in text:
        return _old_client_message(said)
    if "took longer than timeout" in text:
        return _job_timeout_message(said)
    if "cancelled or preempted" in text:
        return f"NDIF stopped the job ({said}): run it again in a few minutes, {CPU_FIX}."
    if isinstance(cause, httpx.TimeoutException):
        return f"NDIF did not answer in time ({said}): try again in a few minutes, {CPU_FIX}."
    if isinstance(cause, httpx.TransportError) or any(m in text for m in _UNREACHABLE):
        return _unreachable_message(err)
    return None


def _key_message() -> str:
    """What to do about a key NDIF refused: set one if none is set, else check the one set."""
    return _bad_key_message() if config.ndif_key_configured() else _no_key_message()


def _old_client_message(said: str) -> str:
    client = client_nnsight_version()
    found = re.search(r"minimum supported version is (\d[\w.+-]*\w)", said)
    if found is None:
        return (
            f"NDIF no longer accepts nnsight {client} ({said}): run `pip install --upgrade "
            "nnsight`, restart the kernel, and check with emgeo.models.ndif.preflight(...)."
        )
    needed = found.group(1)
    return (
        f"NDIF needs nnsight {needed} or newer but this environment has {client}: run "
        f"`pip install nnsight=={needed}` (emgeo.models.ndif.preflight(...) names the exact "
        "version NDIF runs) and restart the kernel."
    )


def _job_timeout_message(said: str) -> str:
    found = re.search(r"timeout: ([\d.]+) seconds", said)
    limit = f"the server's {found.group(1)}-second limit" if found else "the server's time limit"
    return (
        f"the NDIF job ran past {limit}: send fewer or shorter texts per trace (a smaller "
        "batch_size or max_length) and run it again."
    )


def _unreachable_message(err: BaseException) -> str:
    return (
        f"cannot reach the NDIF service at {CONFIG.API.HOST} ({first_line(err, 200)}): check your "
        f"connection and https://nnsight.net/status/, {CPU_FIX}."
    )
