"""``python -m stream.demo`` (what ``make demo`` runs): a scripted 14-zone exam end to end, on real sockets.

Child processes: the engine ``lus-stream --demo --exam-demo --record results/demo --publish-frames
--record-frames`` (the synthetic source walks the 14 Soldati zones with ``stream.exam.DEMO_SCORES``,
3 s per zone after a 1 s lead-in; a scripted exam freezes each zone and stops; the engine then stops) and
the viewer ``lus-view --out results/demo/overlay.mp4 --snapshot-every 90 results/demo/snapshots
--exit-on-disconnect``. This process subscribes too, validates every message and prints one line per
second. When the engine has ended it runs ``lus-stream report`` on the recorded ``.lusr.msgpack`` (report
beside it) and prints the total LUS score and the paths of the overlay video and the report. About 55 s.

``--quick`` is the old 20 s demo instead: the engine alone (scores 0-3, no exam, a 90-frame sliding clip
window because that walk has no zone resets), stopped after ``--seconds`` through the control socket.

Default endpoints, or free loopback ports when those are taken. Extra ``lus-stream`` options go after
``--``, e.g. ``python -m stream.demo -- --mc-samples 8``.
"""

from __future__ import annotations

import argparse
import re
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
SNAPSHOT_EVERY = 90  # the viewer also keeps every 90th overlay as a PNG (docs/img/overlay_demo.png is one)


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
        self.exam: dict[str, Any] | None = None  # newest exam message
        self.lag_ms: list[float] = []
        self.frames_span: list[float] = []  # monotonic arrival of the first and the last frame message

    def add(self, topic: str, msg: dict[str, Any]) -> None:
        self.total[topic] += 1
        self.window[topic] += 1
        self.latest[topic] = msg
        if topic == "exam":
            self.exam = msg
        if topic == "frame":
            self.frames_span[1:] = [time.monotonic()]
            self.lag_ms.append((time.monotonic_ns() - msg["t_capture_ns"]) / 1e6)

    def line(self, elapsed: float) -> str:
        if not self.total:
            return f"[{elapsed:5.1f}s] waiting for the engine (starting, loading models)"
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
        ex = self.exam
        if ex is not None and ex["state"] == "running":
            parts.append(f"exam zone {ex['zone'] or '-'} {ex['scored']}/{ex['n_zones']} scored, "
                         f"partial {ex['partial_total']}")
        if self.errors:
            parts.append(f"INVALID {self.errors}")
        self.window.clear()
        self.lag_ms.clear()
        return " | ".join(parts)


def _report(recording: str, log: Path) -> list[str]:
    """``lus-stream report RECORDING`` (files beside it); returns the paths it wrote."""
    out = subprocess.run([sys.executable, "-m", "stream.cli", "report", recording], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    log.write_text(out.stdout + out.stderr)
    if out.returncode:
        print(f"demo: report failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
        return []
    return [line.split(": ", 1)[1] for line in out.stdout.splitlines() if ": " in line]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(prog="python -m stream.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="the old demo: engine only, scores 0-3, no exam/overlay/report (see --seconds)")
    p.add_argument("--seconds", type=float, default=None,
                   help="--quick: how long to run (default: 20); exam demo: a safety limit (default: 150)")
    p.add_argument("--out", type=Path, default=REPO / "results" / "demo",
                   help="exam demo: folder for the recording, overlay.mp4 and the report "
                   "(default: results/demo)")
    p.add_argument("--pub", default=DEFAULT_PUB, help=f"engine PUB endpoint (default: {DEFAULT_PUB})")
    p.add_argument("--ctrl", default=DEFAULT_CTRL, help=f"engine control endpoint (default: {DEFAULT_CTRL})")
    p.add_argument("--fps", type=float, default=30.0, help="synthetic source frame rate (default: 30)")
    args = p.parse_args(argv)
    seconds = args.seconds or (20.0 if args.quick else 150.0)
    pub, ctrl = args.pub, args.ctrl
    if not _port_free(pub) or not _port_free(ctrl):
        pub, ctrl = _free_endpoint(), _free_endpoint()
        print(f"demo: default ports busy (another engine?), using {pub} and {ctrl}")

    cmd = [sys.executable, "-m", "stream.cli", "--demo", "--fps", str(args.fps), "--pub", pub, "--ctrl", ctrl]
    viewer = None
    out_dir: Path = args.out
    if args.quick:
        window = [] if any(a.startswith("--window") for a in extra) else ["--window", str(DEMO_WINDOW)]
        cmd += [*window, *extra]
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        cmd += ["--exam-demo", "--record", str(out_dir), "--publish-frames", "--record-frames", *extra]
    print("demo: starting", " ".join(cmd[2:]))
    print("demo: synthetic data and demonstration models: not for clinical use")
    engine = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
    viewer_log = out_dir / "viewer.log"
    if not args.quick:
        view_cmd = [sys.executable, "-m", "stream.view.cli", "--connect", pub, "--out",
                    str(out_dir / "overlay.mp4"), "--snapshot-every", str(SNAPSHOT_EVERY),
                    str(out_dir / "snapshots"), "--exit-on-disconnect", "--window", "no"]
        print("demo: viewer", " ".join(view_cmd[2:]))
        viewer = subprocess.Popen(view_cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=viewer_log.open("w"))
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(pub)
    summary = Summary()
    t0 = time.monotonic()
    next_line = t0 + 1.0
    try:
        while time.monotonic() - t0 < seconds and engine.poll() is None:
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
    failed = bool(summary.errors or (summary.total["frame"] == 0 and summary.total["status"] == 0) or code)
    if args.quick:
        return 1 if failed else 0

    view_code = None
    if viewer is not None:
        try:
            view_code = viewer.wait(30)  # leaves a few seconds after the engine's last message
        except subprocess.TimeoutExpired:
            viewer.terminate()
            view_code = viewer.wait()
    view_text = viewer_log.read_text() if viewer_log.exists() else ""
    wrote = re.search(r"wrote (\d+) frames to (\S+)", view_text)
    exam = summary.exam
    if exam is None or exam.get("total") is None:
        print(f"demo: the scripted exam did not finish (last exam message: {exam and exam.get('event')})")
        failed = True
    else:
        scores = " ".join(f"{z['zone']}={z['score']}" for z in exam["zones"])
        print(f"demo: exam {exam['exam_id']}: {scores}")
        from stream.exam import DEMO_SCORES

        print(f"demo: total LUS score {exam['total']} / {exam['max_total']} "
              f"(the simulator's zone severities sum to {sum(DEMO_SCORES)})")
    status = summary.latest.get("status") or {}
    recording = status.get("recording")
    reports = _report(recording, out_dir / "report.log") if recording else []
    if recording:
        print(f"demo: recording {recording}")
    if wrote and view_code == 0:
        span = summary.frames_span[-1] - summary.frames_span[0] if summary.frames_span else 0.0
        rate = f"{int(wrote.group(1)) / span:.1f}" if span > 0 else "?"
        print(f"demo: overlay video {wrote.group(2)} ({wrote.group(1)} frames rendered while "
              f"{summary.total['frame']} were scored in {span:.0f} s: {rate} rendered/s); "
              f"stills in {out_dir / 'snapshots'}")
    else:
        print(f"demo: the viewer failed (exit {view_code}); see {viewer_log}")
        failed = True
    for path in reports:
        print(f"demo: report {path}")
    return 1 if failed or not reports else 0


if __name__ == "__main__":
    sys.exit(main())
