"""Suite-wide test settings: one thread per library (2-core CI), full wire validation, real clips."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Before any numerical library starts its pools: on 2 cores oversubscription is catastrophic.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# Tests check every published message against the wire schema (engines default to a 1-in-100 sample);
# inherited by the engines and viewers the tests start as subprocesses.
os.environ.setdefault("LUS_WIRE_VALIDATE", "all")

import pytest  # noqa: E402

from stream.frames import Frame  # noqa: E402

try:  # torch is optional: the runtime tests run without it
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
except ImportError:  # pragma: no cover - runtime-only environments
    pass


@pytest.fixture(scope="session")
def real_clips_dir() -> Path:
    """The folder of real LUS clips (``LUS_REAL_CLIPS``); skips with the reason when absent."""
    value = os.environ.get("LUS_REAL_CLIPS")
    if not value:
        pytest.skip("LUS_REAL_CLIPS is not set: point it at shared/data/real-clips to run real-clip tests")
    path = Path(value)
    if not (path / "index.csv").is_file():
        pytest.skip(f"LUS_REAL_CLIPS={value} has no index.csv: point it at shared/data/real-clips")
    return path


# ------------------------------------------------------------------------------- in-process sources, clips
class ListSource:
    """Frames from a list, handed out like CaptureProcess.get_batch (lossless, then finished)."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.frames = [Frame(i, 10_000 + i, rng.integers(0, 256, (40, 50), dtype=np.uint8), (5, 6, 50, 40),
                             (60, 70), "list") for i in range(n)]
        self.source_id = "list"
        self.stopped = False

    def get_batch(self, max_n: int, timeout: float | None = None) -> list[Frame]:
        out, self.frames = self.frames[:max_n], self.frames[max_n:]
        return out

    @property
    def finished(self) -> bool:
        return not self.frames

    @property
    def exit_error(self) -> None:
        return None

    def stats(self) -> dict:
        return {"read": 0, "dropped": 0, "state": "finished" if self.finished else "running", "fps": 30.0}

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture(scope="session")
def list_source() -> type[ListSource]:
    """``list_source(n)``: an engine source of ``n`` random frames (the capture process's interface)."""
    return ListSource


def _write_sim_clip(path: Path, score: int, n: int = 12, seed: int = 0) -> Path:
    """A short simulator clip of one severity, written as MPEG-4 (train-free: synth + OpenCV)."""
    import cv2

    from synth import ClipSpec, simulate_clip

    clip = simulate_clip(ClipSpec(seed=seed, n_frames=n, schedule=[(0, score)], height=240, width=320))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 240), isColor=False)
    for frame in clip.frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def sim_clip() -> Callable[..., Path]:
    """``sim_clip(path, score, n=12, seed=0)``: write a simulator clip of one severity."""
    return _write_sim_clip


# ------------------------------------------------------------------------------- lus-serve (Triton) servers
# Shared by the Triton tests (tests/engines/test_triton_serve.py, tests/stream/test_triton_engine.py): the
# `lus_serve` fixture starts `python -m engines.triton_server` in its own process group on free loopback ports
# (in the server venv, `make serve-env`) and kills and cleans up whatever is still running at the end.
_REPO = Path(__file__).resolve().parents[1]
_SERVE_START_TIMEOUT_S = 120.0
_SHORT_DIRS: list[Path] = []


def _serve_python() -> str:
    """The server venv's Python (``make serve-env``); skips the test with the fix when there is none."""
    from stream.bench.triton import BenchError, serve_python

    try:
        return serve_python()
    except BenchError as err:
        pytest.skip(str(err))


@dataclass
class Server:
    """One lus-serve process (its own process group) and what it leaves behind."""

    proc: subprocess.Popen[bytes]
    grpc: int
    http: int
    metrics: int
    workspace: Path
    log: Path
    token_file: Path

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def group_members(self) -> list[str]:
        """Command lines of the server's process group still running (zombies, awaiting their reaper, are
        not)."""
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.proc.pid and fields[0] != "Z":  # pgrp, state
                    out.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
            except OSError:
                continue
        return out

    def group_alive(self) -> bool:
        return bool(self.group_members())

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (a clean stop); SIGKILL the group if it does not end in time."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL the whole group (the server 'lost'), then remove what a clean stop would have."""
        folders, shm = self._leftovers()
        if self.group_alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        for folder in folders:
            subprocess.run(["rm", "-rf", str(folder)], check=False)
        for path in shm | set(Path("/dev/shm").glob(f"pytrtion{self.proc.pid}-*")):
            path.unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", str(self.workspace)], check=False)

    def _leftovers(self) -> tuple[list[Path], set[Path]]:
        """What the group's processes hold that a SIGKILL leaves behind: Triton's /tmp/folderXXXXXX model
        folders (from its stubs' command lines) and the /dev/shm segments they map."""
        folders, shm = [], set()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if os.getpgid(int(proc.name)) != self.proc.pid:
                    continue
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                maps = (proc / "maps").read_text(errors="replace")
            except (OSError, ProcessLookupError):
                continue
            for arg in argv:
                m = re.match(rb"^(/tmp/folder\w{6})/", arg)
                if m:
                    folders.append(Path(m.group(1).decode()))
            shm |= {Path(p) for p in re.findall(r"(/dev/shm/\S+)", maps)}
        return folders, shm

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5) as r:
            return r.read().decode()


def _start_lus_serve(tmp: Path, models: list[Path], ports: list[int] | None = None, *extra: str) -> Server:
    """lus-serve on ``ports`` (free ones by default); its log and token in ``tmp``, its workspace in
    a short folder under /tmp (PyTriton's Unix socket paths must stay under 108 bytes)."""
    py = _serve_python()
    from stream.bench.triton import free_ports, serve_command

    grpc, http, metrics = ports or free_ports(3)
    tmp.mkdir(parents=True, exist_ok=True)
    n = len(list(tmp.glob("server*.log")))
    log, token = tmp / f"server{n}.log", tmp / f"token{n}"
    short = Path(tempfile.mkdtemp(prefix="lst", dir="/tmp"))
    _SHORT_DIRS.append(short)
    workspace = short / "ws"  # made by the server, removed by it on stop
    env = dict(os.environ, PYTHONPATH=str(_REPO), OMP_NUM_THREADS="1", LUS_SERVE_REEXEC="1")
    cmd = serve_command(py, models, (grpc, http, metrics), 1, workspace, token, extra)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                cwd=tmp)
    server = Server(proc, grpc, http, metrics, workspace, log, token)
    deadline = time.monotonic() + _SERVE_START_TIMEOUT_S
    while "lus-serve: ready" not in server.log_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            text = server.log_text()
            server.kill()
            pytest.fail(f"lus-serve did not start (exit {proc.returncode}):\n{text[-3000:]}")
        time.sleep(0.1)
    return server


@pytest.fixture
def lus_serve() -> Iterator[Callable[..., Server]]:
    """``lus_serve(tmp, models, ports=None, *extra_args) -> Server`` (also ``lus_serve.free_ports(n)``);
    every server started is stopped and its folders removed when the test ends."""
    started: list[Server] = []

    def start(tmp: Path, models: list[Path], ports: list[int] | None = None, *extra: str) -> Server:
        server = _start_lus_serve(tmp, models, ports, *extra)
        started.append(server)
        return server

    from stream.bench.triton import free_ports

    start.free_ports = free_ports  # type: ignore[attr-defined]
    yield start
    for s in started:
        if s.proc.poll() is None or s.group_alive():
            s.kill()
    while _SHORT_DIRS:
        shutil.rmtree(_SHORT_DIRS.pop(), ignore_errors=True)
