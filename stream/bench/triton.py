"""``tools/bench.py triton`` / ``lus-stream bench triton``: a model served by ``lus-serve`` (Triton) against
the same model in ONNX Runtime in this process, for 1, 2 and 4 concurrent streams, in one run.

It starts ``lus-serve`` itself (the server venv, ``make serve-env``) with the frame model on free loopback
ports, and stops it at the end (also on an error, Ctrl-C or SIGTERM). Then, for each number of streams N,
N client threads each send one frame every 1/FPS s for ``--seconds``: real frames of the clip, ROI-cropped
and preprocessed as the lanes do (:class:`stream.lanes.Prepared`), each stream starting at another place of
the clip; the frame clocks of the streams run at random offsets (independent capture boxes; ``--phase same``
puts them in step, the best case for batching). Twice per N, same frames, same pacing:

* ``triton``: one client engine per stream (``load_engine(..., backend="triton")``, its own gRPC channel);
* ``onnxruntime``: one in-process ONNX Runtime engine per stream (``--threads`` intra-op threads, the
  server's models get the same number).

Per frame it times the call (``engine.infer``: for Triton request, queue, batch, server-side ORT and
response). From the server, before and after each N, Triton's statistics (``get_inference_statistics``,
with the access token ``lus-serve --access-token-file`` wrote) give the inferences, the executions and the
executions per batch size the dynamic batcher formed. Results: ``OUT/triton.json`` and ``OUT/triton.md``
(:func:`stream.bench.report.triton_markdown`); the table is printed too.

    tools/bench.py triton --clip CLIP --out results/triton --seconds 15 --streams 1,2,4 --fps 30

``--url HOST:PORT`` measures a server that is already running instead (its statistics need
``--token-file`` unless its endpoints are open, as in the stock Triton container).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream.bench.stats import summarise_ns

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "lus-stream-bench-triton/1"
BACKENDS = ("triton", "onnxruntime")
TOKEN_HEADER = "triton-grpc-protocol-triton-access-token"
READY_LINE = "lus-serve: ready"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
EXIT_USAGE = 2
FIX_SERVE_ENV = "create it with `make serve-env` (or `lus-serve setup-env`)"


class BenchError(Exception):
    """The benchmark cannot run as asked; the message (one line) says why and the fix."""


# ------------------------------------------------------------------------------ server statistics
def model_counts(stats: Mapping[str, Any], model: str) -> dict[str, Any]:
    """``{"inferences", "executions", "batch_sizes": {size: executions}}`` of ``model`` (all versions) from
    Triton's ``get_inference_statistics(as_json=True)`` (counts are protobuf JSON strings)."""
    inferences = executions = 0
    sizes: dict[int, int] = {}
    for entry in stats.get("model_stats", []):
        if entry.get("name") != model:
            continue
        inferences += int(entry.get("inference_count", 0) or 0)
        executions += int(entry.get("execution_count", 0) or 0)
        for b in entry.get("batch_stats", []):
            count = int((b.get("compute_infer") or {}).get("count", 0) or 0)
            if count:
                size = int(b["batch_size"])
                sizes[size] = sizes.get(size, 0) + count
    return {"inferences": inferences, "executions": executions, "batch_sizes": dict(sorted(sizes.items()))}


def counts_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What happened between two :func:`model_counts` snapshots (Triton's counters only grow)."""
    sizes = {
        size: n - before["batch_sizes"].get(size, 0)
        for size, n in after["batch_sizes"].items()
        if n - before["batch_sizes"].get(size, 0) > 0
    }
    return {
        "inferences": after["inferences"] - before["inferences"],
        "executions": after["executions"] - before["executions"],
        "batch_sizes": dict(sorted(sizes.items())),
    }


# ------------------------------------------------------------------------------ summary rows
@dataclass
class StreamResult:
    """One client stream of one phase: its call latencies (s), failed calls and late frames."""

    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    late: int = 0  # calls that took longer than the frame interval
    last_error: str | None = None


def summary_row(
    streams: int, backend: str, results: Sequence[StreamResult], server: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One table row: the latencies of all streams pooled. For ``triton`` the inferences, executions and
    batch sizes are the server's (``server``: a :func:`counts_delta`; None: unknown); the in-process
    engine runs one session per frame (batch 1) by construction."""
    lat_ns = [int(t * 1e9) for r in results for t in r.latencies_s]
    s = summarise_ns(lat_ns)
    frames = len(lat_ns)
    inferences: int | None
    executions: int | None
    sizes: dict[int, int] | None
    if backend != "triton":
        inferences, executions, sizes = frames, frames, ({1: frames} if frames else {})
        source = "client: one run per frame"
    elif server is None:
        inferences = executions = sizes = None
        source = "unavailable"
    else:
        inferences, executions = int(server["inferences"]), int(server["executions"])
        sizes = {int(k): int(v) for k, v in server["batch_sizes"].items()}
        source = "server"
    return {
        "streams": streams,
        "backend": backend,
        "frames": frames,
        "errors": sum(r.errors for r in results),
        "late": sum(r.late for r in results),
        "mean_ms": s.mean_ms,
        "p50_ms": s.p50_ms,
        "p99_ms": s.p99_ms,
        "max_ms": s.max_ms,
        "inferences": inferences,
        "executions": executions,
        "mean_batch": inferences / executions if inferences is not None and executions else None,
        "batch_sizes": sizes,
        "batch_source": source,
        "per_stream": [
            summarise_ns([int(t * 1e9) for t in r.latencies_s]).as_dict()
            | {"errors": r.errors, "late": r.late, "last_error": r.last_error}
            for r in results
        ],
    }


# ------------------------------------------------------------------------------ the server
def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound and released at once)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def serve_command(python: str, models: Sequence[Path], ports: Sequence[int], threads: int, workspace: Path,
                  token_file: Path, extra: Sequence[str] = ()) -> list[str]:
    """The ``lus-serve`` command line on loopback ``ports`` (gRPC, HTTP, metrics), shared by the benchmark
    and the tests."""
    grpc, http, metrics = ports
    return [python, "-m", "engines.triton_server", "--models", *map(str, models),
            "--grpc-port", str(grpc), "--http-port", str(http), "--metrics-port", str(metrics),
            "--threads", str(threads), "--workspace", str(workspace), "--access-token-file", str(token_file),
            *extra]  # fmt: skip


def serve_python() -> str:
    """The Python that can host ``lus-serve`` (this one, or the server venv's); BenchError with the fix."""
    from engines.triton_server import find_serve_python, server_env_problem

    problem = server_env_problem()
    if problem is None:
        return sys.executable
    py = find_serve_python()
    if py is None:
        raise BenchError(f"no lus-serve environment ({problem}); {FIX_SERVE_ENV}")
    return str(py)


class ServeProcess:
    """``lus-serve`` in its own process group on free loopback ports; its workspace, log and access token
    in a short folder under /tmp (PyTriton's Unix socket paths must stay under 108 bytes)."""

    def __init__(self, manifest: Path, threads: int, extra: Sequence[str] = (), python: str | None = None):
        self.manifest = manifest
        self.threads = threads
        self.extra = list(extra)
        self.python = python or serve_python()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: Path | None = None
        self.grpc, self.http, self.metrics = free_ports(3)
        self.ready_line = ""
        self.start_s = float("nan")

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    @property
    def log(self) -> Path:
        assert self.dir is not None
        return self.dir / "serve.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.dir and self.log.is_file() else ""

    def token(self) -> str | None:
        path = self.dir / "token" if self.dir else None
        return path.read_text().strip() if path and path.is_file() else None

    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lsb", dir="/tmp"))
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), LUS_SERVE_REEXEC="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        cmd = serve_command(self.python, [self.manifest], (self.grpc, self.http, self.metrics), self.threads,
                            self.dir / "ws", self.dir / "token", self.extra)
        t0 = time.monotonic()
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=self.dir
            )
        while True:
            text = self.log_text()
            line = next((ln for ln in text.splitlines() if ln.startswith(READY_LINE)), None)
            if line is not None:
                self.ready_line, self.start_s = line, time.monotonic() - t0
                return
            if self.proc.poll() is not None or time.monotonic() - t0 > START_TIMEOUT_S:
                code = self.proc.poll()
                self.stop()
                last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["(no output)"]
                why = f"exit {code}" if code is not None else f"not ready after {START_TIMEOUT_S:.0f} s"
                raise BenchError(f"lus-serve did not start ({why}): {last[0][:300]}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM to the group (a clean stop, about 5 s); SIGKILL if it does not end in time."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
                except ProcessLookupError:
                    pass
            code = self.proc.returncode
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        return code


class ServerStats:
    """Triton's per-model statistics over gRPC (token-restricted under ``lus-serve``)."""

    def __init__(self, url: str, model: str, token: str | None) -> None:
        from engines.triton_backend import import_tritonclient

        grpc, _ = import_tritonclient()
        self.client = grpc.InferenceServerClient(url)
        self.model = model
        self.headers = {TOKEN_HEADER: token} if token else None

    def snapshot(self) -> dict[str, Any]:
        raw = self.client.get_inference_statistics(self.model, headers=self.headers, as_json=True)
        return model_counts(raw, self.model)

    def close(self) -> None:
        self.client.close()


# ------------------------------------------------------------------------------ frames and streams
def clip_feeds(clip: Path, manifest: Mapping[str, Any], max_frames: int) -> list[dict[str, np.ndarray]]:
    """The model inputs of up to ``max_frames`` frames of ``clip``: decoded, ROI-cropped (auto) and
    preprocessed as the lanes do; an MC-dropout input is all ones (a deterministic pass)."""
    from stream.bench.isolated import decode_and_roi
    from stream.capture import SourceSpec
    from stream.lanes import Prepared

    _, frames = decode_and_roi(SourceSpec("clip", path=str(clip)), max_frames)
    if not frames:
        raise BenchError(f"--clip {clip}: no frame could be decoded")
    inputs = list(manifest["inputs"])
    mc = (manifest.get("parameters") or {}).get("mc_dropout") or {}
    feeds = []
    for f in frames:
        feed = {str(inputs[0]["name"]): Prepared(f).input(manifest["preprocessing"])[0]}
        for extra in inputs[1:]:
            if extra["name"] != mc.get("input"):
                raise BenchError(
                    f"input {extra['name']!r} of {manifest['name']}: only image (+ MC-dropout) models"
                )
            feed[str(extra["name"])] = np.ones((1, *mc["shape"]), dtype=np.float32)
        feeds.append(feed)
    return feeds


def run_streams(
    infer: Sequence[Callable[[dict[str, np.ndarray]], Any]],
    feeds: Sequence[dict[str, np.ndarray]],
    fps: float,
    seconds: float,
    offsets_s: Sequence[float],
    stop: threading.Event | None = None,
) -> list[StreamResult]:
    """Stream i calls ``infer[i]`` once every 1/fps s (plus ``offsets_s[i]``) for ``seconds``, frames from
    ``feeds`` starting at i·len/N; a call that overruns delays the next (no frame is skipped)."""
    from engines.base import EngineError

    n = len(infer)
    results = [StreamResult() for _ in range(n)]
    failures: list[BaseException] = []
    stop = stop or threading.Event()
    start = time.monotonic() + 0.2
    frames = max(1, math.ceil(seconds * fps))

    def client(i: int) -> None:
        r, first = results[i], i * len(feeds) // n
        try:
            for k in range(frames):
                if stop.is_set():
                    return
                delay = start + offsets_s[i] + k / fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                feed = feeds[(first + k) % len(feeds)]
                t0 = time.perf_counter()
                try:
                    infer[i](feed)
                except EngineError as exc:
                    r.errors += 1
                    r.last_error = str(exc)[:300]
                    continue
                dt = time.perf_counter() - t0
                r.latencies_s.append(dt)
                r.late += dt > 1.0 / fps
        except BaseException as exc:  # reported by the caller
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=client, args=(i,), name=f"stream-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return results


# ------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tools/bench.py triton",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Per-frame latency of the frame model served by lus-serve (Triton, started here) against "
        "in-process ONNX Runtime, for 1, 2 and 4 concurrent streams, with the server's batch sizes. "
        "Writes OUT/triton.json and OUT/triton.md.",
    )
    p.add_argument("--clip", type=Path, required=True, help="video clip whose frames are sent")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: results/triton-<UTC>)")
    p.add_argument("--manifest", type=Path, default=REPO / "models" / "frame" / "regstn.json")
    p.add_argument("--seconds", type=float, default=15.0, help="seconds per streams × backend phase")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second per stream")
    p.add_argument("--streams", default="1,2,4", help="numbers of concurrent streams, comma-separated")
    p.add_argument("--phase", choices=("random", "same"), default="random",
                   help="streams' frame clocks at random offsets (independent boxes) or in step")  # fmt: skip
    p.add_argument("--threads", type=int, default=1,
                   help="ORT intra-op threads: each in-process engine and each served model")  # fmt: skip
    p.add_argument("--max-frames", type=int, default=300, help="frames of the clip decoded (then cycled)")
    p.add_argument("--serve-args", default="", help="extra lus-serve options (one string), e.g. "
                   "'--queue-delay-us 0'")  # fmt: skip
    p.add_argument("--url", default=None, help="measure this running server (HOST:PORT), start none")
    p.add_argument("--token-file", type=Path, default=None, help="with --url: its statistics access token")
    return p


def _streams(text: str) -> list[int]:
    try:
        out = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise BenchError(f"--streams {text!r}: give positive numbers, e.g. 1,2,4")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    old_term = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM: stop the server like Ctrl-C does

        def on_term(signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        return _run(args, argv)
    except BenchError as exc:
        print(f"bench triton: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bench triton: interrupted; server stopped", file=sys.stderr)
        return 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from engines import load_engine
    from engines.base import BackendUnavailableError, EngineError
    from engines.manifest import load_manifest
    from stream.bench import report
    from stream.bench.machine import describe_machine

    streams = _streams(args.streams)
    if not args.clip.is_file():
        raise BenchError(f"--clip {args.clip}: no such file")
    if args.fps <= 0 or args.seconds <= 0:
        raise BenchError("--fps and --seconds must be positive")
    try:
        manifest = load_manifest(args.manifest)
    except (EngineError, OSError, ValueError) as exc:
        raise BenchError(f"--manifest {args.manifest}: {exc}") from exc
    try:
        from engines.triton_backend import import_tritonclient

        import_tritonclient()
    except BackendUnavailableError as exc:
        raise BenchError(str(exc)) from exc
    server = None if args.url else ServeProcess(args.manifest, args.threads, args.serve_args.split())
    out_dir = args.out or REPO / "results" / f"triton-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    notes: list[str] = []
    if load_avg is not None and load_avg > 1.5:
        notes.append(f"load average {load_avg:.2f} at start (> 1.5): other work shares the CPU")
    feeds = clip_feeds(args.clip, manifest, args.max_frames)
    rng = np.random.default_rng(0)
    engines: list[Any] = []
    stats: ServerStats | None = None
    stop = threading.Event()
    rows: list[dict[str, Any]] = []
    t_start = time.monotonic()
    try:
        if server is not None:
            print(f"bench triton: starting lus-serve ({args.manifest})…", flush=True)
            server.start()
            print(server.ready_line, flush=True)
        url = server.url if server is not None else args.url
        token = server.token() if server is not None else _read_token(args.token_file)
        try:
            stats = ServerStats(url, str(manifest["name"]), token)
            stats.snapshot()
        except Exception as exc:  # statistics are optional for a server we did not start
            if server is not None:
                raise BenchError(f"Triton's statistics at {url}: {exc}") from exc
            notes.append(f"no server statistics ({' '.join(str(exc).split())[:200]}): pass --token-file")
            stats = None
        for n in streams:
            offsets = [0.0 if args.phase == "same" else float(rng.uniform(0, 1 / args.fps)) for _ in range(n)]
            for backend in BACKENDS:
                print(f"bench triton: {n} stream(s) × {args.fps:g} fps × {args.seconds:g} s, {backend}…",
                      flush=True)  # fmt: skip
                kw: dict[str, Any] = {"triton_url": url} if backend == "triton" else {"threads": args.threads}
                engines = [load_engine(args.manifest, backend=backend, **kw) for _ in range(n)]
                for e in engines:
                    e.warmup(1, 3)
                before = stats.snapshot() if stats is not None and backend == "triton" else None
                calls = [e.infer for e in engines]
                results = run_streams(calls, feeds, args.fps, args.seconds, offsets, stop)
                delta = None
                if before is not None and stats is not None:
                    delta = counts_delta(before, stats.snapshot())
                for e in engines:
                    e.close()
                engines = []
                row = summary_row(n, backend, results, delta)
                row["offsets_ms"] = [round(o * 1e3, 3) for o in offsets]
                rows.append(row)
                if row["errors"]:
                    why = next(r.last_error for r in results if r.last_error)
                    notes.append(f"{n} stream(s) {backend}: {row['errors']} calls failed (last: {why})")
    finally:
        stop.set()
        for e in engines:
            e.close()
        if stats is not None:
            stats.close()
        if server is not None:
            server.stop()
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "created_utc": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "command": "tools/bench.py triton " + " ".join(argv),
        "machine": describe_machine(measure_peak=False),
        "load_average_start": load_avg,
        "clip": str(args.clip),
        "frames_decoded": len(feeds),
        "manifest": str(args.manifest),
        "model": manifest["name"],
        "fps": args.fps,
        "seconds": args.seconds,
        "streams": streams,
        "phase": args.phase,
        "threads": args.threads,
        "server": {
            "url": args.url or (server.url if server else None),
            "started_here": server is not None,
            "ready": server.ready_line if server else None,
            "start_s": round(server.start_s, 2) if server else None,
            "serve_args": args.serve_args,
        },
        "rows": rows,
        "notes": notes,
        "bench_wall_s": round(time.monotonic() - t_start, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = report._clean(result)
    (out_dir / "triton.json").write_text(json.dumps(clean, indent=1, ensure_ascii=False))
    text = report.triton_markdown(result)
    (out_dir / "triton.md").write_text(text)
    print("\n" + "\n".join(report.triton_table(rows)), flush=True)
    print(f"bench triton: wrote {out_dir / 'triton.json'}, {out_dir / 'triton.md'}", flush=True)
    return 0


def _read_token(path: Path | None) -> str | None:
    if path is not None:
        return path.read_text().strip()
    return os.environ.get("LUS_SERVE_ACCESS_TOKEN") or None
