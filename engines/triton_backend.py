"""Triton backend: an :class:`~engines.base.Engine` whose model runs on a Triton Inference Server,
called over gRPC (``tritonclient[grpc]``).

Open it like any other engine, from the model's manifest::

    engine = load_engine("models/frame/regstn.json", backend="triton", triton_url="127.0.0.1:8001")

The served model is the one named by the manifest's ``name``; its tensors are the manifest's.

At start the engine checks that the server answers (else :class:`BackendUnavailableError` naming
the URL and the fix: start ``lus-serve``) and that the served model's inputs and outputs (names,
data types, shapes with ``-1`` for the batch dimension) are the manifest's, and, when the server's
config carries them (``lus-serve`` and ``lus-serve repo`` write them), that it was made from the same
ONNX file; a mismatch raises :class:`ServedModelMismatchError` in one sentence naming both.

Faults while streaming. A call that fails because the server or the model is gone (gRPC
``UNAVAILABLE``, a deadline, an unknown or unloaded model) raises :class:`EngineUnavailableError`
and turns :attr:`TritonEngine.state` from ``"ok"`` to ``"lost"``. While lost, :meth:`infer` raises
at once (it never blocks a lane and never returns zeros or an earlier output); a background thread
probes the server with cheap health calls (``ServerLive`` + ``ModelReady`` + the metadata check)
at exponentially growing intervals (0.1 s doubling to 2 s by default) and turns the state back to
``"ok"`` when the model is served again, e.g. after ``lus-serve`` restarted on the same port. No
restart of the engine is needed. Other failures (the server refused the request, an output is
missing or has the wrong shape) raise :class:`~engines.base.EngineError` and leave the state alone.

A lane reads ``engine.state`` (``"ok"`` | ``"lost"``), ``engine.last_error`` and
``engine.health()``, and catches :class:`EngineUnavailableError` (a subclass of ``EngineError``).
Batches larger than the server's ``max_batch_size`` are split into several requests.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BackendUnavailableError, Engine, EngineError
from engines.manifest import BATCH_DIM

log = logging.getLogger(__name__)

STATE_OK = "ok"
STATE_LOST = "lost"
#: manifest dtype → the datatype string of Triton's inference protocol
WIRE_DTYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "uint8": "UINT8",
    "bool": "BOOL",
}
#: gRPC status codes that mean "the server or the model is not there right now"
UNAVAILABLE_CODES = frozenset(
    {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED", "StatusCode.NOT_FOUND"}
)
#: server messages that mean the same when the status code is less specific
UNAVAILABLE_MESSAGES = (
    "unknown model", "is not ready", "is not found", "no available versions", "unavailable"
)
RESTRICTED_MESSAGE = "protocol is restricted"
MAX_MESSAGE_BYTES = 2**31 - 1
DEFAULT_PORT = 8001
ONNX_SHA_PARAMETER = "lus_onnx_sha256"


class EngineUnavailableError(EngineError):
    """The served model cannot be reached now (server down, model unloaded); no outputs were made.

    The engine's ``state`` is ``"lost"`` and it keeps probing in the background; a later call
    succeeds once the server serves the model again.
    """


class ServedModelMismatchError(EngineError):
    """The model the server serves under this name is not the one the manifest describes."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a lost engine probes for the server: ``initial_s`` doubling (``factor``) up to ``max_s``."""

    initial_s: float = 0.1
    max_s: float = 2.0
    factor: float = 2.0
    probe_timeout_s: float = 1.0

    def delays(self) -> Iterator[float]:
        """The probe intervals, forever: initial, initial·factor, … capped at max_s."""
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * self.factor, self.max_s)


def import_tritonclient() -> tuple[Any, Any]:
    """``(tritonclient.grpc, InferenceServerException)``, or BackendUnavailableError with the fix."""
    try:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
    except ImportError as exc:
        raise BackendUnavailableError(
            f"tritonclient is not installed ({exc}); pip install 'tritonclient[grpc]' (lus-stream[serve])"
        ) from exc
    return grpcclient, InferenceServerException


def normalise_url(url: str) -> str:
    """``HOST:PORT`` for gRPC: a ``grpc://`` prefix is dropped, a missing port is 8001."""
    url = url.strip()
    for prefix in ("grpc://", "grpcs://"):
        if url.startswith(prefix):
            url = url[len(prefix) :]
    url = url.rstrip("/")
    if not url:
        raise ValueError("empty Triton URL; pass HOST:PORT, e.g. 127.0.0.1:8001")
    if "/" in url or url.startswith(("http:", "https:")):
        raise ValueError(f"Triton URL {url!r}: pass the gRPC endpoint as HOST:PORT (e.g. 127.0.0.1:8001)")
    if url.startswith("["):  # [IPv6]:port
        return url if "]:" in url else f"{url}:{DEFAULT_PORT}"
    return url if ":" in url else f"{url}:{DEFAULT_PORT}"


def is_unavailable(exc: BaseException) -> bool:
    """Does this client error mean the server or the model is gone (rather than a bad request)?

    Triton answers a call to a token-restricted endpoint with UNAVAILABLE too: that is a refusal
    (pass the token in ``headers``), not a lost server.
    """
    text = str(exc).lower()
    if RESTRICTED_MESSAGE in text:
        return False
    status = str(getattr(exc, "status", lambda: None)() or "")
    if status in UNAVAILABLE_CODES:
        return True
    return any(s in text for s in UNAVAILABLE_MESSAGES)


def _describe(tensors: Mapping[str, tuple[str, list[int]]]) -> str:
    return ", ".join(f"{n} {dt}{shape}" for n, (dt, shape) in tensors.items())


def manifest_io(manifest: Mapping[str, Any]) -> tuple[dict[str, tuple[str, list[int]]], ...]:
    """The manifest's inputs and outputs as the server reports them: wire dtype and -1 for batch."""
    out = []
    for key in ("inputs", "outputs"):
        out.append(
            {
                str(t["name"]): (
                    WIRE_DTYPES.get(str(t["dtype"]), str(t["dtype"])),
                    [-1 if d == BATCH_DIM else int(d) for d in t["shape"]],
                )
                for t in manifest[key]
            }
        )
    return out[0], out[1]


def server_io(metadata: Mapping[str, Any]) -> tuple[dict[str, tuple[str, list[int]]], ...]:
    """A model's inputs and outputs from Triton's metadata (``get_model_metadata(as_json=True)``)."""
    out = []
    for key in ("inputs", "outputs"):
        out.append(
            {
                str(t["name"]): (str(t["datatype"]), [int(d) for d in t.get("shape", [])])
                for t in metadata.get(key, [])
            }
        )
    return out[0], out[1]


def _shapes_agree(want: list[int], have: list[int]) -> bool:
    """Manifest shape (-1 = batch) against the server's (-1 = any size)."""
    if len(want) != len(have):
        return False
    return all((w == -1 and h == -1) or (w != -1 and h in (w, -1)) for w, h in zip(want, have, strict=True))


def check_served_model(
    manifest: Mapping[str, Any],
    manifest_path: str | Path,
    url: str,
    metadata: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`ServedModelMismatchError` unless the served model is the manifest's.

    Inputs must match exactly (names, data types, shapes), the manifest's outputs must be among the
    server's with the same types and shapes; the batch dimension must be dynamic on the server. When
    the server's config carries ``lus_onnx_sha256`` it must be the manifest's ONNX hash.
    """
    name = str(manifest["name"])
    m_in, m_out = manifest_io(manifest)
    s_in, s_out = server_io(metadata)
    ok = set(m_in) == set(s_in) and set(m_out) <= set(s_out)
    if ok:
        for mine, theirs in ((m_in, s_in), (m_out, s_out)):
            for tensor, (dtype, shape) in mine.items():
                s_dtype, s_shape = theirs[tensor]
                ok = ok and dtype == s_dtype and _shapes_agree(shape, s_shape)
    if not ok:
        raise ServedModelMismatchError(
            f"{manifest_path}: model {name!r} on the Triton server at {url} takes {_describe(s_in)} and "
            f"returns {_describe(s_out)}, but the manifest says {_describe(m_in)} -> {_describe(m_out)}; "
            "serve the model this manifest describes (lus-serve --models ...) or open the manifest the "
            "server's model was made from"
        )
    params = (config or {}).get("parameters") or {}
    served_sha = (params.get(ONNX_SHA_PARAMETER) or {}).get("string_value")
    mine_sha = manifest.get("onnx_sha256") or manifest.get("sha256")
    if served_sha and mine_sha and served_sha != mine_sha:
        raise ServedModelMismatchError(
            f"{manifest_path}: model {name!r} on the Triton server at {url} was made from ONNX file "
            f"{served_sha[:12]}…, but the manifest's is {str(mine_sha)[:12]}…; serve this manifest's model "
            "(lus-serve --models ...) or open the manifest the server's model was made from"
        )


class TritonEngine(Engine):
    """A model served by Triton, called over gRPC; ``state`` says whether the server is there."""

    backend = "triton"
    remote = True

    def __init__(
        self,
        manifest: Mapping[str, Any],
        manifest_path: str | Path,
        url: str,
        *,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 3.0,
        retry: RetryPolicy | None = None,
        model_version: str = "",
        ssl: bool = False,
        root_certificates: str | None = None,
        private_key: str | None = None,
        certificate_chain: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(manifest, manifest_path)
        self._grpc, self._exc_type = import_tritonclient()
        self.url = normalise_url(url)
        self.device = f"triton://{self.url}"
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.retry = retry or RetryPolicy()
        self.model_version = str(model_version)
        self.headers = dict(headers) if headers else None
        self._client_kw = dict(
            ssl=ssl,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            channel_args=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                # reconnect quickly once a restarted server listens again (gRPC's default backs off to 120 s)
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._state = STATE_OK
        self._last_error: str | None = None
        self._lost_since: float | None = None
        self._probes = 0
        self.recoveries = 0
        self._monitor: threading.Thread | None = None
        #: the server's max_batch_size (0: the model does not batch); larger batches are split
        self.server_max_batch = 0
        self.server_platform = "?"
        self._client = self._new_client()
        try:
            self._connect()
        except Exception:
            self._client.close()
            raise

    # ---------------------------------------------------------------------------------- public
    @property
    def state(self) -> str:
        """``"ok"`` (calls go to the server) or ``"lost"`` (calls raise; probing in the background)."""
        with self._lock:
            return self._state

    @property
    def last_error(self) -> str | None:
        """Why the engine is (or last was) lost; None while it never was."""
        with self._lock:
            return self._last_error

    def health(self) -> dict[str, Any]:
        """State, last error, seconds lost, probes since the loss and recoveries so far."""
        with self._lock:
            lost_for = time.monotonic() - self._lost_since if self._lost_since is not None else 0.0
            return {
                "state": self._state,
                "url": self.url,
                "model": self.name,
                "last_error": self._last_error,
                "lost_for_s": round(lost_for, 3) if self._state == STATE_LOST else 0.0,
                "probes": self._probes,
                "recoveries": self.recoveries,
            }

    def probe(self) -> bool:
        """One synchronous health check now; turns the state back to ``"ok"`` when it passes."""
        ok, why = self._check_served(self.retry.probe_timeout_s)
        with self._lock:
            self._probes += 1
            if ok:
                self._recovered_locked()
                return True
        self._mark_lost(why)
        return False

    def close(self) -> None:
        """Stop probing and close the gRPC channel (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        monitor = self._monitor
        if monitor is not None and monitor is not threading.current_thread():
            monitor.join(timeout=self.retry.probe_timeout_s + 1.0)
        with contextlib.suppress(Exception):  # closing a dead channel
            self._client.close()

    def __repr__(self) -> str:
        return f"<TritonEngine {self.name!r} url={self.url} state={self.state}>"

    # ------------------------------------------------------------------------------- connecting
    def _new_client(self) -> Any:
        try:
            return self._grpc.InferenceServerClient(self.url, **self._client_kw)
        except Exception as exc:  # bad certificate paths, malformed URL
            raise BackendUnavailableError(
                f"{self.manifest_path}: cannot open a gRPC channel to {self.url} ({exc}); check --triton-url"
                " and the TLS files"
            ) from exc

    def _connect(self) -> None:
        """Start-up checks: server live, model ready, model is the manifest's; sets server_max_batch."""
        where, name = self.manifest_path, self.name
        try:
            live = self._client.is_server_live(headers=self.headers, client_timeout=self.connect_timeout_s)
        except self._exc_type as exc:
            live, why = False, _short(exc)
        else:
            why = "server not live"
        if not live:
            raise BackendUnavailableError(
                f"{where}: no Triton server answers at {self.url} ({why}); start one with `lus-serve` "
                f"(serves the installed models on 127.0.0.1:{DEFAULT_PORT}) or pass the right --triton-url"
            )
        try:
            ready = self._client.is_model_ready(
                name, self.model_version, headers=self.headers, client_timeout=self.connect_timeout_s
            )
        except self._exc_type as exc:
            raise BackendUnavailableError(
                f"{where}: the Triton server at {self.url} did not say whether model {name!r} is ready "
                f"({_short(exc)}); check the server's log"
            ) from exc
        if not ready:
            raise BackendUnavailableError(
                f"{where}: the Triton server at {self.url} serves no ready model {name!r}; serve it with "
                "`lus-serve --models <folder with this manifest>` (or add it with `lus-serve repo`)"
            )
        try:
            metadata, config = self._describe_served(self.connect_timeout_s)
        except self._exc_type as exc:
            raise BackendUnavailableError(
                f"{where}: the Triton server at {self.url} did not describe model {name!r} "
                f"({_short(exc)}); check the server's log"
            ) from exc
        check_served_model(self.manifest, where, self.url, metadata, config)
        self.server_max_batch = int(config.get("max_batch_size", 0) or 0)
        self.server_platform = str(config.get("platform") or config.get("backend") or "?")

    def _describe_served(self, timeout_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
        kw = dict(headers=self.headers, as_json=True, client_timeout=timeout_s)
        metadata = self._client.get_model_metadata(self.name, self.model_version, **kw)
        config = self._client.get_model_config(self.name, self.model_version, **kw)
        return dict(metadata), dict(config.get("config", config))

    def _check_served(self, timeout_s: float) -> tuple[bool, str]:
        """(ok, why not): the cheap health check a lost engine repeats."""
        try:
            if not self._client.is_server_live(headers=self.headers, client_timeout=timeout_s):
                return False, f"the Triton server at {self.url} is not live"
            if not self._client.is_model_ready(
                self.name, self.model_version, headers=self.headers, client_timeout=timeout_s
            ):
                return False, f"model {self.name!r} is not ready on the Triton server at {self.url}"
            metadata, config = self._describe_served(timeout_s)
            check_served_model(self.manifest, self.manifest_path, self.url, metadata, config)
        except ServedModelMismatchError as exc:
            return False, str(exc)
        except self._exc_type as exc:
            return False, f"the Triton server at {self.url} does not answer ({_short(exc)})"
        self.server_max_batch = int(config.get("max_batch_size", 0) or 0)
        return True, ""

    # ------------------------------------------------------------------------------ lost / back
    def _mark_lost(self, why: str) -> None:
        with self._lock:
            self._last_error = why
            if self._state == STATE_LOST:
                return
            self._state = STATE_LOST
            self._lost_since = time.monotonic()
            self._probes = 0
            log.warning("%s: %s; probing in the background", self.name, why)
            if not self._closed.is_set() and self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._recover, name=f"triton-probe-{self.name}", daemon=True
                )
                self._monitor.start()

    def _recovered_locked(self) -> None:
        if self._state == STATE_LOST:
            lost_for = time.monotonic() - (self._lost_since or time.monotonic())
            log.warning("%s: Triton server at %s serves it again after %.1f s", self.name, self.url, lost_for)
            self.recoveries += 1
        self._state = STATE_OK
        self._lost_since = None

    def _recover(self) -> None:
        """Background probe loop of a lost engine; returns when the model is served again or on close."""
        for delay in self.retry.delays():
            if self._closed.wait(delay):
                return
            ok, why = self._check_served(self.retry.probe_timeout_s)
            with self._lock:
                self._probes += 1
                if ok or self._state == STATE_OK:  # back (or a synchronous probe() got there first)
                    if ok:
                        self._recovered_locked()
                    self._monitor = None  # cleared under the lock: a new loss starts a new thread
                    return
                self._last_error = why

    # ---------------------------------------------------------------------------------- running
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed.is_set():
            raise EngineError(f"{self.manifest_path}: this Triton engine is closed; load it again")
        with self._lock:
            if self._state == STATE_LOST:
                lost_for = time.monotonic() - (self._lost_since or time.monotonic())
                raise EngineUnavailableError(
                    f"{self.manifest_path}: model {self.name!r} on the Triton server at {self.url} is "
                    f"unavailable ({self._last_error}; lost {lost_for:.1f} s ago); no outputs for this call, "
                    "the engine reconnects by itself when the server serves the model again"
                )
        batch = self._batch_of(inputs)
        step = self.server_max_batch if self.server_max_batch > 0 else batch
        if batch <= step:
            return self._infer_once(inputs, batch)
        parts = [
            self._infer_once({k: v[i : i + step] for k, v in inputs.items()}, min(step, batch - i))
            for i in range(0, batch, step)
        ]
        return {t.name: np.concatenate([p[t.name] for p in parts], axis=0) for t in self.outputs}

    def _batch_of(self, inputs: Mapping[str, np.ndarray]) -> int:
        for spec in self.inputs:
            if spec.shape and spec.shape[0] == BATCH_DIM:
                return int(inputs[spec.name].shape[0])
        return 1

    def _infer_once(self, inputs: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        grpc = self._grpc
        request = []
        for spec in self.inputs:
            data = inputs[spec.name]
            tensor = grpc.InferInput(spec.name, list(data.shape), WIRE_DTYPES[spec.dtype])
            tensor.set_data_from_numpy(data)
            request.append(tensor)
        wanted = [grpc.InferRequestedOutput(t.name) for t in self.outputs]
        try:
            result = self._client.infer(
                self.name,
                request,
                model_version=self.model_version,
                outputs=wanted,
                client_timeout=self.timeout_s,
                headers=self.headers,
            )
        except self._exc_type as exc:
            if is_unavailable(exc):
                why = f"{_short(exc)}"
                self._mark_lost(why)
                raise EngineUnavailableError(
                    f"{self.manifest_path}: model {self.name!r} on the Triton server at {self.url} did not "
                    f"answer ({why}); no outputs for this call, the engine reconnects by itself"
                ) from exc
            raise EngineError(
                f"{self.manifest_path}: the Triton server at {self.url} refused the request for "
                f"{self.name!r} ({_short(exc)}); check the server's log"
            ) from exc
        out: dict[str, np.ndarray] = {}
        for spec in self.outputs:
            want = spec.concrete(batch)
            arr: np.ndarray | None
            try:
                arr = result.as_numpy(spec.name)
            except ValueError as exc:  # the payload does not fill the announced shape
                arr, bad = None, str(exc)
            else:
                bad = "missing" if arr is None else f"shape {tuple(arr.shape)}"
            if arr is None or tuple(arr.shape) != want:
                raise EngineError(
                    f"{self.manifest_path}: the Triton server at {self.url} returned output {spec.name!r} of "
                    f"{self.name!r} as {bad}, expected {list(want)}; the served model or the server is "
                    "broken (PyTriton's stub needs numpy<2, docs/serving.md)"
                )
            out[spec.name] = np.array(arr, dtype=spec.dtype, copy=True)
        return out


def _short(exc: BaseException) -> str:
    """A one-line reason from a tritonclient exception (status and message)."""
    status = getattr(exc, "status", lambda: None)()
    message = exc.message() if hasattr(exc, "message") else str(exc)
    text = f"{status}: {message}" if status else str(message)
    return " ".join(str(text).split())[:300]
