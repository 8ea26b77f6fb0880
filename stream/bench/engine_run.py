"""One benchmark run of the REAL engine: ``lus-stream`` as a subprocess (its capture process, lanes,
aggregator, publisher and recorder) plus the subscriber process, then the per-stage analysis.

Order (slow-joiner handling): the subscriber process starts first, connects its SUB socket to
the engine's PUB endpoint (ZeroMQ allows connecting before the bind) and prints ``READY``; only
then is the engine started. Afterwards the frames the engine recorded (``--record``, every
published message, :func:`stream.recorder.read_results`) are compared with the frames received,
and every frame read by capture but never received is counted as a drop, split by where it was
lost (capture buffer / not scored / between publish and subscriber).

Stages read from every ``frame`` message (see ``docs/wire.md``): ``wait`` (capture → the scoring
lane takes it: the capture ring, ROI crop, batching), ``preprocess`` (letterbox + scaling, per
batch), ``infer`` (the model call, per batch; ``infer_per_frame`` = infer / batch), ``aggregate``,
``publish`` (ready → socket lock held), then publish → receive (serialisation + validation +
send + loopback TCP + the subscriber's unpack) and the end to end capture → received.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream.bench.procmon import ProcessMonitor
from stream.bench.stats import rate_per_s, summarise_ns
from stream.bench.subscriber import load as load_subscriber

REPO = Path(__file__).resolve().parents[2]
FRAME_STAGES = ("wait", "preprocess", "infer", "aggregate", "publish")
SEG_STAGES = ("wait", "preprocess", "infer", "publish")


def _finish_subscriber(sub: subprocess.Popen, mon: ProcessMonitor) -> None:
    """Let the subscriber process write its samples (it ends on its own), then stop monitoring."""
    try:
        sub.wait(10)
    except subprocess.TimeoutExpired:
        sub.terminate()
        sub.wait(5)
    mon.stop()
    if sub.stdout is not None:
        sub.stdout.close()

def stage_engines(src: Path, backend: str, dst: Path, seg_src: Path | None = None) -> Path:
    """A model folder holding only ``backend``'s artefacts (symlinks), so each lane finds one file per model.

    Work-around: ``stream.lanes.find_models`` takes every ``*.json`` with the right task, so a
    ``NAME.torch.json`` beside ``NAME.json`` is taken as a second model (a second segmentation
    member, or "several frame models"). For ``torch`` only the torch-export manifests are linked
    (the engine then loads them directly); otherwise only the ONNX ones (and any TensorRT plans).
    ``seg_src`` takes the segmentation members from another folder (e.g. the paper ensemble).
    """
    import json

    if dst.exists():
        import shutil

        shutil.rmtree(dst)
    for sub in ("frame", "seg"):
        folder = (seg_src if seg_src is not None else src / sub) if sub == "seg" else src / sub
        if not folder.is_dir():
            continue
        out = dst / sub
        out.mkdir(parents=True, exist_ok=True)
        for man in sorted(folder.glob("*.json")):
            try:
                m = json.loads(man.read_text())
            except (OSError, ValueError):
                continue
            fmt = m.get("format")
            keep = m.get("task") == "aggregator" or (
                fmt == "torch-export" if backend == "torch" else fmt in ("onnx", "tensorrt-plan")
            )
            if not keep:
                continue
            (out / man.name).symlink_to(man.resolve())
            file = m.get("file")
            if file and (folder / file).exists() and not (out / file).exists():
                (out / file).symlink_to((folder / file).resolve())
            for extra in folder.glob(man.stem + ".*"):  # keep plans / torch artefacts the loader looks for
                if extra.suffix != ".json" and not (out / extra.name).exists() and backend != "onnxruntime":
                    (out / extra.name).symlink_to(extra.resolve())
    return dst


def _log(path: Path) -> Any:
    """A log file handed to a child process (the child keeps it open for its lifetime)."""
    return open(path, "wb")


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def bench_env(threads: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, str(threads))
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@dataclass
class EngineRun:
    """What to run: ``source_args`` are ``lus-stream`` source options (``--clip F`` / ``--synthetic``)."""

    label: str
    source_args: list[str]
    mode: str  # "paced" | "afap"
    backend: str = "onnxruntime"
    engines_dir: Path = REPO / "models"
    max_frames: int | None = None
    extra_args: list[str] = field(default_factory=list)
    timeout_s: float = 600.0

    def command(self, pub: str, ctrl: str, record: Path) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "stream.cli",
            *self.source_args,
            "--engines",
            str(self.engines_dir),
            "--backend",
            self.backend,
            "--pub",
            pub,
            "--ctrl",
            ctrl,
            "--record",
            str(record),
        ]
        if self.mode == "afap":
            cmd.append("--as-fast-as-possible")
        if self.max_frames:
            cmd += ["--max-frames", str(self.max_frames)]
        return cmd + list(self.extra_args)


def _wait_ready(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    assert proc.stdout is not None
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        line = proc.stdout.readline()
        if line.strip() == b"READY":
            return
        if not line and proc.poll() is not None:
            break
    raise RuntimeError(f"bench subscriber did not become ready (exit code {proc.poll()})")


def _engine_frames(ctrl: str) -> int | None:
    from stream.control import request

    try:
        reply = request(ctrl, "status", timeout_ms=300)
    except (TimeoutError, OSError):
        return None
    st = reply.get("status") if isinstance(reply, dict) else None
    return int(st.get("frames_scored", 0)) if isinstance(st, dict) else None


def run_engine(run: EngineRun, workdir: Path, progress: Any = None) -> dict[str, Any]:
    """Run the engine and the subscriber; return the analysed result (see :func:`analyse`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    pub, ctrl = free_endpoint(), free_endpoint()
    record_dir = workdir / "record"
    sub_out = workdir / "subscriber.msgpack"
    env = bench_env()
    sub = subprocess.Popen(
        [sys.executable, "-m", "stream.bench.subscriber", "--connect", pub, "--out", str(sub_out)],
        stdout=subprocess.PIPE,
        stderr=_log(workdir / "subscriber.log"),
        env=env,
        cwd=REPO,
    )
    try:
        _wait_ready(sub)
    except RuntimeError:
        sub.kill()
        raise
    cmd = run.command(pub, ctrl, record_dir)
    (workdir / "command.txt").write_text(" ".join(cmd[1:]) + "\n")
    mon = ProcessMonitor()
    t0 = time.monotonic()
    with open(workdir / "engine.log", "wb") as log:
        engine = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        mon.watch(engine.pid, "engine", with_children=True)
        mon.watch(sub.pid, "subscriber")
        mon.start()
        last = 0
        timed_out = False
        while engine.poll() is None:
            if time.monotonic() - t0 > run.timeout_s:
                timed_out = True
                with contextlib.suppress(TimeoutError, OSError):
                    from stream.control import request

                    request(ctrl, "stop", timeout_ms=2000)
                try:
                    engine.wait(20)
                except subprocess.TimeoutExpired:
                    engine.kill()
                break
            time.sleep(0.5)
            if progress is not None:
                n = _engine_frames(ctrl)
                if n is not None and n > last:
                    progress.update(n - last)
                    last = n
        code = engine.wait()
    wall = time.monotonic() - t0
    _finish_subscriber(sub, mon)
    files = sorted(record_dir.glob("*.lusr.msgpack"))
    if not files:
        tail = (workdir / "engine.log").read_text(errors="replace")[-2000:]
        msg = f"engine run {run.label} wrote no results file (exit code {code}); log tail:\n{tail}"
        raise RuntimeError(msg)
    from stream.recorder import read_results

    recorded = read_results(files[-1])
    empty: dict[str, Any] = {"rows": [], "last_status": None, "counts": {}}
    received = load_subscriber(sub_out) if sub_out.exists() else empty
    result = analyse(recorded, received)
    rec_frames = recorded.topic("frame")
    window = None
    if rec_frames:
        window = (
            min(int(r.msg["t_capture_ns"]) for r in rec_frames) / 1e9,
            max(int(r.msg["t_publish_ns"]) for r in rec_frames) / 1e9,
        )
    procs = mon.summaries(window)
    result["example_frame_msg"] = rec_frames[0].msg if rec_frames else None
    result |= {
        "label": run.label, "mode": run.mode, "backend": run.backend, "exit_code": code,
        "timed_out": timed_out, "wall_s": round(wall, 2), "processes": procs,
        "command": "lus-stream " + " ".join(cmd[3:]),
    }  # fmt: skip
    return result


# ------------------------------------------------------------------------------------- analysis
def _ns(values: list[int] | np.ndarray) -> dict[str, Any]:
    return summarise_ns(values).as_dict()


def analyse(recorded: Any, received: dict[str, Any]) -> dict[str, Any]:
    """Per-stage and end-to-end statistics of one run from the recorder file and the subscriber rows.

    ``recorded``: :class:`stream.recorder.Results` (or anything with ``.topic(name)`` returning
    records with ``.msg``); ``received``: the subscriber record (``rows``, ``last_status``).
    Raw samples (ns) are returned under ``"samples"`` for plots; the rest is JSON-ready.
    """
    rec_frames = [r.msg for r in recorded.topic("frame")]
    rec_seg = [r.msg for r in recorded.topic("seg")]
    statuses = [r.msg for r in recorded.topic("status")]
    final = statuses[-1] if statuses else (received.get("last_status") or {})
    rows = received.get("rows", [])
    got_frames = [r for r in rows if r["topic"] == "frame"]
    got_seg = [r for r in rows if r["topic"] == "seg"]

    read = int((final.get("source") or {}).get("read") or 0)
    rec_seqs = sorted(int(m["seq"]) for m in rec_frames)
    got_seqs = {int(r["seq"]) for r in got_frames}
    n_read = max(read, (rec_seqs[-1] + 1) if rec_seqs else 0)
    capture_gaps = sorted(set(range(rec_seqs[-1] + 1)) - set(rec_seqs)) if rec_seqs else []
    not_scored_tail = max(0, n_read - (rec_seqs[-1] + 1 if rec_seqs else 0))
    lost_in_transport = [s for s in rec_seqs if s not in got_seqs]
    first_got = min(got_seqs) if got_seqs else None
    before_first = [s for s in lost_in_transport if first_got is None or s < first_got]
    scored_span = (rec_seqs[-1] + 1) if rec_seqs else 0
    drops = {
        "read": n_read,
        "recorded": len(rec_seqs),
        "received": len(got_seqs),
        "capture_buffer": len(capture_gaps),
        "read_after_last_scored": not_scored_tail,  # --max-frames / stop: read, then the engine stopped
        "transport": len(lost_in_transport),
        "transport_before_first_received": len(before_first),
        "total": scored_span - len(got_seqs),
        "status_capture_dropped": int((final.get("drops") or {}).get("capture") or 0),
        "status_publish_dropped": int((final.get("drops") or {}).get("publish") or 0),
    }

    stage_ns: dict[str, list[int]] = {k: [] for k in FRAME_STAGES}
    infer_pf: list[int] = []
    batches: list[int] = []
    for m in rec_frames:
        st = m.get("stages_ns") or {}
        for k in FRAME_STAGES:
            if k in st:
                stage_ns[k].append(int(st[k]))
        b = int(m.get("batch") or 1)
        batches.append(b)
        if "infer" in st:
            infer_pf.append(int(st["infer"]) // b)
    agg_b1 = [
        int(m["stages_ns"]["aggregate"])
        for m in rec_frames
        if int(m.get("batch") or 1) == 1 and "aggregate" in (m.get("stages_ns") or {})
    ]
    cap_pub = [int(m["t_publish_ns"]) - int(m["t_capture_ns"]) for m in rec_frames]
    pub_recv = [r["t_recv_ns"] - r["t_publish_ns"] for r in got_frames]
    e2e = [r["t_recv_ns"] - r["t_capture_ns"] for r in got_frames]
    t_pub = [int(m["t_publish_ns"]) for m in rec_frames]
    t_cap = [int(m["t_capture_ns"]) for m in rec_frames]

    scoring: dict[str, Any] = {
        "frames": len(rec_seqs),
        "fps": rate_per_s(len(t_pub), min(t_pub), max(t_pub)) if t_pub else float("nan"),
        "input_fps": rate_per_s(len(t_cap), min(t_cap), max(t_cap)) if t_cap else float("nan"),
        "mean_batch": float(np.mean(batches)) if batches else float("nan"),
        "max_batch": int(max(batches)) if batches else 0,
        "stages": {k: _ns(v) for k, v in stage_ns.items()},
        "infer_per_frame": _ns(infer_pf),
        "aggregate_batch1": _ns(agg_b1),
        "capture_to_publish": _ns(cap_pub),
        "publish_to_receive": _ns(pub_recv),
        "end_to_end": _ns(e2e),
        "drops": drops,
    }
    seg_stage_ns: dict[str, list[int]] = {k: [] for k in SEG_STAGES}
    for m in rec_seg:
        st = m.get("stages_ns") or {}
        for k in SEG_STAGES:
            if k in st:
                seg_stage_ns[k].append(int(st[k]))
    seg_pub = [int(m["t_publish_ns"]) for m in rec_seg]
    seg_e2e = [r["t_recv_ns"] - r["t_capture_ns"] for r in got_seg]
    segmentation: dict[str, Any] = {
        "runs": len(rec_seg),
        "fps": rate_per_s(len(seg_pub), min(seg_pub), max(seg_pub)) if seg_pub else float("nan"),
        "stages": {k: _ns(v) for k, v in seg_stage_ns.items()},
        "publish_to_receive": _ns([r["t_recv_ns"] - r["t_publish_ns"] for r in got_seg]),
        "end_to_end": _ns(seg_e2e),
        "received": len(got_seg),
        "skipped": int((final.get("drops") or {}).get("segmentation_skipped") or 0),
    }
    lanes = final.get("lanes") or {}
    return {
        "scoring": scoring,
        "segmentation": segmentation,
        "lanes": {k: {kk: v.get(kk) for kk in ("enabled", "model", "backend", "threads", "members", "reason")}
                  for k, v in lanes.items() if isinstance(v, dict)},
        "samples": {"end_to_end_ns": e2e, "capture_to_publish_ns": cap_pub, "publish_to_receive_ns": pub_recv,
                    "infer_per_frame_ns": infer_pf, "seg_end_to_end_ns": seg_e2e,
                    "seg_infer_ns": seg_stage_ns["infer"]},
    }  # fmt: skip


# ------------------------------------------------------------------------------------- naive loop
def run_naive(
    manifest: Path,
    source_args: list[str],
    workdir: Path,
    aggregator: Path | None = None,
    checkpoint: Path | None = None,
    max_frames: int | None = None,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """Run ``tools/naive_loop.py`` (PyTorch eager) as a process with the bench subscriber (``--json``).

    ``source_args``: ``["--clip", FILE]`` or ``["--synthetic", N]``. Returns fps (from the received
    messages' publish times, as for the engine), latency summaries, drops, CPU and the model source.
    """
    import json

    workdir.mkdir(parents=True, exist_ok=True)
    pub = free_endpoint()
    sub_out = workdir / "subscriber.msgpack"
    env = bench_env()
    sub = subprocess.Popen(
        [sys.executable, "-m", "stream.bench.subscriber", "--connect", pub, "--out", str(sub_out), "--json"],
        stdout=subprocess.PIPE,
        stderr=_log(workdir / "subscriber.log"),
        env=env,
        cwd=REPO,
    )
    _wait_ready(sub)
    cmd = [
        sys.executable,
        str(REPO / "tools" / "naive_loop.py"),
        "--manifest",
        str(manifest),
        *source_args,
        "--pub",
        pub,
    ]
    if aggregator is not None:
        cmd += ["--aggregator", str(aggregator)]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    if max_frames:
        cmd += ["--max-frames", str(max_frames)]
    mon = ProcessMonitor()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=_log(workdir / "naive.log"),
        env=env,
        cwd=REPO,
    )
    mon.watch(proc.pid, "naive", with_children=True)
    mon.watch(sub.pid, "subscriber")
    mon.start()
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    _finish_subscriber(sub, mon)
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (workdir / "naive.log").read_text(errors="replace")[-2000:]
        return {"available": False, "reason": f"naive loop failed (exit {proc.returncode}): {tail}"}
    summary = json.loads(lines[-1])
    rows = load_subscriber(sub_out)["rows"] if sub_out.exists() else []
    t_pub = [r["t_publish_ns"] for r in rows]
    window = (min(r["t_capture_ns"] for r in rows) / 1e9, max(t_pub) / 1e9) if rows else None
    procs = mon.summaries(window)
    return {
        "available": True,
        "frames": summary["frames"],
        "received": len(rows),
        "fps": rate_per_s(len(t_pub), min(t_pub), max(t_pub)) if t_pub else float("nan"),
        "fps_own_clock": summary["fps"],
        "model_source": summary["model_source"],
        "threads": summary["threads"],
        "end_to_end": _ns([r["t_recv_ns"] - r["t_capture_ns"] for r in rows]),
        "processes": procs,
        "command": "python " + " ".join(cmd[1:]),
    }
