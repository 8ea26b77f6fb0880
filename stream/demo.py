"""``python -m stream.demo`` (what ``make demo`` runs): the engine on the synthetic live source with the
shipped models, plus a subscriber in this process that validates every message and prints one line
per second; after ``--seconds`` it stops the engine through the control socket.

It is ``lus-stream --demo`` in a child process (so the demo exercises the real sockets), on the
default endpoints, or on free loopback ports when those are taken. Extra ``lus-stream`` options go
after ``--``, e.g. ``python -m stream.demo -- --mc-samples 8 --record results/``; unless one of them
is ``--window``, the demo uses a 90-frame sliding clip window (the walk has no zone resets).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import zmq

from stream import wire
from stream.control import DEFAULT_CTRL, request
from stream.publisher import DEFAULT_PUB

REPO = Path(__file__).resolve().parents[1]
# The demo source changes score every ~7 s with no zone resets; a 3 s sliding window lets the clip score
# follow it (a whole-clip uninorm fold saturates after a few hundred frames: docs/wire.md, `video`).
DEMO_WINDOW = 90


def _port_free(endpoint: str) -> bool:
    host, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    with socket.socket() as s:
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
    return True


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class Summary:
    """What the subscriber saw in the last second and overall."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self.window: Counter[str] = Counter()
        self.latest: dict[str, dict[str, Any]] = {}
        self.errors = 0
        self.lag_ms: list[float] = []

    def add(self, topic: str, msg: dict[str, Any]) -> None:
        self.total[topic] += 1
        self.window[topic] += 1
        self.latest[topic] = msg
        if topic == "frame":
            self.lag_ms.append((time.monotonic_ns() - msg["t_capture_ns"]) / 1e6)

    def line(self, elapsed: float) -> str:
        parts = [f"[{elapsed:5.1f}s] frames {self.window['frame']:3d}/s"]
        f, v, st = self.latest.get("frame"), self.latest.get("video"), self.latest.get("status")
        if f is not None:
            parts.append(f"frame score {f['score']} (p={max(f['probs']):.2f})")
        if v is not None:
            parts.append(f"clip score {v['score']} (p={max(v['probs']):.2f}, {v['frames']} fr)")
        parts.append(f"seg {self.window['seg']}/s")
        if self.lag_ms:
            lag = sorted(self.lag_ms)
            parts.append(f"capture→here p50 {lag[len(lag) // 2]:.0f} ms max {lag[-1]:.0f} ms")
        if st is not None:
            lanes = st["lanes"]
            off = [k for k in ("scoring", "segmentation") if not lanes[k]["enabled"]]
            if off:
                parts.append("OFF: " + ", ".join(off))
            parts.append(f"drops {st['drops']['capture']}")
        if self.errors:
            parts.append(f"INVALID {self.errors}")
        self.window.clear()
        self.lag_ms.clear()
        return " | ".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(prog="python -m stream.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="how long to run (default: 20)")
    p.add_argument("--pub", default=DEFAULT_PUB, help=f"engine PUB endpoint (default: {DEFAULT_PUB})")
    p.add_argument("--ctrl", default=DEFAULT_CTRL, help=f"engine control endpoint (default: {DEFAULT_CTRL})")
    p.add_argument("--fps", type=float, default=30.0, help="synthetic source frame rate (default: 30)")
    args = p.parse_args(argv)
    pub, ctrl = args.pub, args.ctrl
    if not _port_free(pub) or not _port_free(ctrl):
        pub, ctrl = _free_endpoint(), _free_endpoint()
        print(f"demo: default ports busy (another engine?), using {pub} and {ctrl}")

    window = [] if any(a.startswith("--window") for a in extra) else ["--window", str(DEMO_WINDOW)]
    cmd = [sys.executable, "-m", "stream.cli", "--demo", "--fps", str(args.fps), "--pub", pub,
           "--ctrl", ctrl, *window, *extra]
    print("demo: starting", " ".join(cmd[2:]))
    print("demo: synthetic data and demonstration models: not for clinical use")
    engine = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(pub)
    summary = Summary()
    t0 = time.monotonic()
    next_line = t0 + 1.0
    try:
        while time.monotonic() - t0 < args.seconds and engine.poll() is None:
            if sub.poll(50):
                try:
                    topic, msg, _ = wire.decode(sub.recv_multipart())
                    summary.add(topic, msg)
                except wire.WireError as err:
                    summary.errors += 1
                    print(f"demo: invalid message: {err}")
            if time.monotonic() >= next_line:
                print(summary.line(time.monotonic() - t0), flush=True)
                next_line += 1.0
    except KeyboardInterrupt:
        pass
    finally:
        if engine.poll() is None:
            try:
                request(ctrl, "stop", timeout_ms=3000)
            except TimeoutError:
                engine.terminate()
        try:
            code = engine.wait(30)
        except subprocess.TimeoutExpired:
            engine.kill()
            code = engine.wait()
        sub.close()
        ctx.term()
    print(f"demo: received {dict(summary.total)}; {summary.errors} invalid; engine exit code {code}")
    return 1 if summary.errors or (summary.total["frame"] == 0 and summary.total["status"] == 0) else code


if __name__ == "__main__":
    sys.exit(main())
