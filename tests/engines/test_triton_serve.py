"""lus-serve for real: PyTriton serving the shipped models on free loopback ports, client engines over gRPC.

* two client engines in two threads, different frames at the same moments: every frame's outputs equal local
  ONNX Runtime within 1e-4, and Triton's metrics count fewer executions than inferences (batches across
  clients);
* the segmentation member with its ``dropout_mask`` input (deterministic and MC masks) equals local ORT;
* faults: the model unloaded on the server, then the server killed mid-stream → ``state == "lost"`` and
  every call raising :class:`EngineUnavailableError` at once (never zeros, never a stale output); a
  restart on the same ports → the same engine recovers by itself;
* SIGTERM stops everything it started: exit 0, no process left in its group, workspace and shared memory gone;
* the fault test runs over TLS (certificates made with ``openssl``, when it is there): a plaintext client is
  refused, the TLS client works and reconnects over TLS.

The server runs in its own environment (PyTriton 0.7's stub needs numpy<2): ``lus-serve setup-env``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "tritonclient.grpc", reason="tritonclient[grpc] is not installed (pip install -e '.[serve]')"
)

from engines import BackendUnavailableError, EngineUnavailableError, load_engine
from engines.triton_backend import STATE_LOST, STATE_OK, RetryPolicy

REPO = Path(__file__).resolve().parents[2]
FRAME = REPO / "models" / "frame" / "regstn.json"
UNET = REPO / "models" / "seg" / "unet.json"
TOL = 1e-4
START_TIMEOUT_S = 120.0
FAST_RETRY = RetryPolicy(initial_s=0.05, max_s=0.5, probe_timeout_s=1.0)
SHORT_DIRS: list[Path] = []


def _metric(text: str, name: str, model: str) -> float:
    m = re.search(rf'^{name}\{{[^}}]*model="{re.escape(model)}"[^}}]*\}} ([0-9.e+]+)$', text, re.M)
    assert m, f"{name} for {model} not in the metrics"
    return float(m.group(1))


def _frames(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((1, 1, 128, 128), dtype=np.float32) for _ in range(n)]


def _make_certs(folder: Path) -> dict[str, Path] | None:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost (None without ``openssl``)."""
    if shutil.which("openssl") is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    names = ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    ca_key, ca, key, csr, crt = (folder / n for n in names)
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for cmd in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
         "-subj", "/CN=lus-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
         "-days", "1", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True)
    return {"ca": ca, "cert": crt, "key": key}


def _wait_state(engine: object, state: str, timeout_s: float) -> float:
    t0 = time.monotonic()
    while engine.state != state:  # type: ignore[attr-defined]
        assert time.monotonic() - t0 < timeout_s, f"engine still {engine.state} after {timeout_s} s"  # type: ignore[attr-defined]
        time.sleep(0.02)
    return time.monotonic() - t0


# ------------------------------------------------------------------------------------------------ tests
def test_two_clients_match_local_onnxruntime_and_batch(tmp_path: Path, lus_serve) -> None:
    server = lus_serve(tmp_path, [FRAME, UNET])
    local = load_engine(FRAME, backend="onnxruntime", threads=1)
    clients = [load_engine(FRAME, backend="triton", triton_url=server.url) for _ in range(2)]
    assert clients[0].server_max_batch == 8 and clients[0].state == STATE_OK
    n = 40
    frames = [_frames(1, n), _frames(2, n)]  # two capture boxes, two different streams
    results: list[list[dict[str, np.ndarray]]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        try:
            for x in frames[i]:
                barrier.wait(timeout=30)  # both boxes send each frame at the same moment
                results[i].append(clients[i].infer({"frame": x}))
                time.sleep(1 / 60)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for i in range(2):
        assert len(results[i]) == n
        for x, got in zip(frames[i], results[i], strict=True):
            want = local.infer({"frame": x})
            for name in ("probs", "theta"):
                assert got[name].shape == want[name].shape
                np.testing.assert_allclose(got[name], want[name], atol=TOL, rtol=0)
    assert not np.allclose(results[0][0]["probs"], results[1][0]["probs"])  # really two inputs

    model = clients[0].name
    text = server.metrics_text()
    inferences = _metric(text, "nv_inference_count", model)
    executions = _metric(text, "nv_inference_exec_count", model)
    assert inferences == 2 * n  # every frame of both clients, once
    assert executions < inferences, (executions, inferences)  # requests of the two clients batched

    # the segmentation member, dropout_mask included: deterministic (ones) and an MC batch
    seg_local = load_engine(UNET, backend="onnxruntime", threads=1)
    seg = load_engine(UNET, backend="triton", triton_url=server.url)
    rng = np.random.default_rng(3)
    image = (rng.random((1, 1, 260, 200), dtype=np.float32) * 2 - 1)
    ones = np.ones((1, 128, 13, 10), np.float32)
    feed = {"image": image, "dropout_mask": ones}
    np.testing.assert_allclose(seg.infer(feed)["probs"], seg_local.infer(feed)["probs"], atol=TOL, rtol=0)
    masks = (rng.random((3, 128, 13, 10)) > 0.5).astype(np.float32) * 2
    feed = {"image": np.repeat(image, 3, axis=0), "dropout_mask": masks}
    np.testing.assert_allclose(seg.infer(feed)["probs"], seg_local.infer(feed)["probs"], atol=TOL, rtol=0)
    for e in (*clients, seg):
        e.close()

    assert server.stop() == 0, server.log_text()[-3000:]  # SIGTERM: a clean stop
    assert "lus-serve: stopped" in server.log_text()
    assert not server.group_alive(), server.group_members()  # lus-serve waited for all it started
    left = sorted(str(p) for p in server.workspace.rglob("*")) if server.workspace.exists() else []
    assert not server.workspace.exists(), left  # the run folder and the workspace it made are gone
    assert not list(Path("/dev/shm").glob(f"pytrtion{server.proc.pid}-*"))


def test_lost_server_and_unloaded_model_then_recovery(tmp_path: Path, lus_serve) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    ports = lus_serve.free_ports(3)
    certs = _make_certs(tmp_path / "tls")
    tls_args = ["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])] if certs else []
    tls_opts = {"ssl": True, "root_certificates": str(certs["ca"])} if certs else {}
    server = lus_serve(tmp_path, [FRAME], ports, *tls_args)
    local = load_engine(FRAME, backend="onnxruntime", threads=1)
    if certs:  # gRPC over TLS: a plaintext client gets nothing
        with pytest.raises(BackendUnavailableError, match="no Triton server answers"):
            load_engine(FRAME, backend="triton", triton_url=server.url,
                        triton_options={"connect_timeout_s": 2})
    engine = load_engine(FRAME, backend="triton", triton_url=server.url,
                         triton_options={"retry": FAST_RETRY, "timeout_s": 5.0, **tls_opts})
    x = _frames(5, 1)[0]
    want = local.infer({"frame": x})["probs"]
    np.testing.assert_allclose(engine.infer({"frame": x})["probs"], want, atol=TOL, rtol=0)

    # 1. the model unloaded on the server (token-restricted model control)
    token = server.token_file.read_text().strip()
    admin = grpcclient.InferenceServerClient(server.url, ssl=bool(certs),
                                             root_certificates=str(certs["ca"]) if certs else None)
    with pytest.raises(InferenceServerException, match="restricted"):  # model control needs the token
        admin.unload_model(engine.name)
    admin.unload_model(engine.name, headers={"triton-grpc-protocol-triton-access-token": token})
    admin.close()
    with pytest.raises(EngineUnavailableError, match="reconnects by itself"):
        engine.infer({"frame": x})
    assert engine.state == STATE_LOST
    t0 = time.monotonic()
    for _ in range(20):  # while lost, calls fail at once: a lane is never blocked
        with pytest.raises(EngineUnavailableError):
            engine.infer({"frame": x})
    assert time.monotonic() - t0 < 0.5
    time.sleep(0.3)
    assert engine.state == STATE_LOST and engine.health()["probes"] >= 1  # probing, model still gone
    server.kill()

    # 2. a fresh server on the same ports: the same engine comes back by itself
    server = lus_serve(tmp_path, [FRAME], ports, *tls_args)
    _wait_state(engine, STATE_OK, 15)
    assert engine.health()["recoveries"] == 1
    np.testing.assert_allclose(engine.infer({"frame": x})["probs"], want, atol=TOL, rtol=0)

    # 3. the server killed mid-stream: every call either the right answer or EngineUnavailableError
    outcomes: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            try:
                got = engine.infer({"frame": x})["probs"]
            except EngineUnavailableError:
                outcomes.append("unavailable")
            else:
                assert np.abs(got - want).max() < TOL  # never zeros, never another frame's output
                outcomes.append("ok")
            time.sleep(1 / 30)

    t = threading.Thread(target=stream)
    t.start()
    try:
        time.sleep(0.5)
        server.kill()
        _wait_state(engine, STATE_LOST, 10)
        time.sleep(0.3)
        assert outcomes[-1] == "unavailable"
        server = lus_serve(tmp_path, [FRAME], ports, *tls_args)
        _wait_state(engine, STATE_OK, 15)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(timeout=10)
    assert outcomes[0] == "ok" and outcomes[-1] == "ok" and "unavailable" in outcomes
    assert set(outcomes) == {"ok", "unavailable"}
    assert engine.health()["recoveries"] == 2
    engine.close()
