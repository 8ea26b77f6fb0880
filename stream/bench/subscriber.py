"""The benchmark's subscriber PROCESS: ``python -m stream.bench.subscriber --connect EP --out FILE``.

It connects a SUB socket (receive high-water mark unlimited, so it never drops on its side), then
prints ``READY`` on stdout: the benchmark starts the engine only after that line, which is how the
ZeroMQ slow-joiner problem is handled (the subscription exists before the engine binds, so the
first messages are not lost to a subscription still in flight). Whatever still goes missing is
counted afterwards against the engine's recorder file, not assumed away.

Per message it keeps: topic, seq, t_capture_ns, t_publish_ns, t_recv_ns (``time.monotonic_ns``
right after the receive returns: comparable with the engine's stamps on the same host), the
frame batch size and ``stages_ns``. Work per message is one msgpack unpack (no validation), so
the subscriber costs the 2-core machine as little as possible.

It stops on the engine's final ``status`` (source state finished/stopped/failed) plus a short
drain, on SIGTERM/SIGINT, or after ``--idle-s`` seconds without a message, and writes FILE:
a msgpack map ``{"rows": [...], "last_status": {...} | None, "counts": {topic: n}}``.

``--json`` reads the naive reference loop's plain-JSON messages (one part, ``{"seq", "t_capture_ns",
"t_publish_ns", ...}``, ended by ``{"final": true}``) instead of the wire format.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import zmq

FINAL_STATES = ("finished", "stopped", "failed")
DRAIN_S = 0.3


def _row(topic: str, msg: dict[str, Any], t_recv: int) -> dict[str, Any]:
    return {
        "topic": topic,
        "seq": int(msg.get("seq", -1)),
        "t_capture_ns": int(msg.get("t_capture_ns", 0)),
        "t_publish_ns": int(msg.get("t_publish_ns", 0)),
        "t_recv_ns": t_recv,
        "batch": int(msg.get("batch", 1) or 1),
        "stages_ns": {k: int(v) for k, v in (msg.get("stages_ns") or {}).items()},
    }


def receive(
    connect: str,
    out: Path,
    idle_s: float = 30.0,
    json_mode: bool = False,
    ready_stream: Any = sys.stdout,
) -> dict[str, Any]:
    """Receive until the engine's final status (or a signal / idle timeout); write and return the record."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)  # unlimited: drops are the engine's (SNDHWM), never ours
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(connect)
    stop = {"now": False}

    def on_signal(_signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    last_status: dict[str, Any] | None = None
    print("READY", file=ready_stream, flush=True)
    last_msg = time.monotonic()
    drain_until: float | None = None
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while not stop["now"]:
        now = time.monotonic()
        if drain_until is not None and now >= drain_until:
            break
        if now - last_msg > idle_s:
            break
        if not poller.poll(50):
            continue
        while True:  # take everything queued before polling again
            try:
                parts = sock.recv_multipart(flags=zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            t_recv = time.monotonic_ns()
            last_msg = time.monotonic()
            if json_mode:
                topic, msg = "frame", json.loads(parts[-1])
                if msg.get("final"):
                    drain_until = time.monotonic() + DRAIN_S
                    continue
            else:
                topic = parts[0].decode("ascii", "replace")
                msg = msgpack.unpackb(parts[1], raw=False)
            counts[topic] += 1
            if topic == "status":
                last_status = msg
                state = (msg.get("source") or {}).get("state")
                if state in FINAL_STATES and drain_until is None:
                    drain_until = time.monotonic() + DRAIN_S
                continue
            if topic in ("image", "exam"):
                continue
            rows.append(_row(topic, msg, t_recv))
    sock.close()
    ctx.term()
    record = {"rows": rows, "last_status": last_status, "counts": dict(counts)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgpack.packb(record, use_bin_type=True))
    return record


def load(path: str | Path) -> dict[str, Any]:
    """Read a subscriber record written by :func:`receive`."""
    return msgpack.unpackb(Path(path).read_bytes(), raw=False, strict_map_key=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m stream.bench.subscriber", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--connect", required=True, help="engine PUB endpoint, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--out", required=True, type=Path, help="where to write the received rows (msgpack)")
    p.add_argument("--idle-s", type=float, default=30.0, help="give up after this long without a message")
    p.add_argument("--json", action="store_true", help="plain JSON messages (the naive reference loop)")
    args = p.parse_args(argv)
    receive(args.connect, args.out, args.idle_s, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
