"""What a subscriber that stops reading costs the engine: scoring throughput with and without one.

Runs ``lus-stream --synthetic --as-fast-as-possible --publish-frames --record-frames`` twice on the given
models, once with no subscriber and once with a SUB socket that connects and never reads (its buffers
overflow within a second: ~35 kB JPEG per frame), and reports frames per second of each run (from the
recorded publish times), their ratio, and that every frame and image was still published and recorded.
The PUB side is non-blocking (``docs/wire.md``), so the ratio should be ~1.

    python tools/bench_stalled_subscriber.py --engines models/demo --out results/bench/stalled.json
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import zmq

from stream.recorder import read_results


def _free() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def run_once(engines: Path, frames: int, stalled: bool, folder: Path) -> dict[str, Any]:
    pub = _free()
    cmd = [sys.executable, "-m", "stream.cli", "--synthetic", "--as-fast-as-possible", "--max-frames",
           str(frames), "--publish-frames", "--record-frames", "--record", str(folder), "--engines",
           str(engines), "--pub", pub, "--ctrl", "none", "--threads", "1"]
    ctx = zmq.Context()
    sub = None
    if stalled:  # connects, never reads
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 1)
        sub.setsockopt(zmq.RCVBUF, 4096)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(pub)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    finally:
        if sub is not None:
            sub.close(0)
        ctx.term()
    if proc.returncode != 0:
        raise SystemExit(f"engine failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    rec = read_results(next(folder.glob("*.lusr.msgpack")))
    published = rec.topic("frame")
    span = (published[-1].msg["t_publish_ns"] - published[0].msg["t_publish_ns"]) / 1e9
    return {"stalled_subscriber": stalled, "frames": len(published), "images": len(rec.topic("image")),
            "fps": round((len(published) - 1) / span, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", type=Path, default=Path("models/demo"), help="model folder (frame/, seg/)")
    p.add_argument("--frames", type=int, default=400)
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = run_once(args.engines, args.frames, False, Path(tmp, "a"))
        stalled = run_once(args.engines, args.frames, True, Path(tmp, "b"))
    result = {"base": base, "stalled": stalled, "ratio": round(stalled["fps"] / base["fps"], 3)}
    print(f"no subscriber {base['fps']} fps, stalled subscriber {stalled['fps']} fps "
          f"(ratio {result['ratio']}); frames {base['frames']}/{stalled['frames']}, images "
          f"{base['images']}/{stalled['images']} published and recorded")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
