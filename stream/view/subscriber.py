"""The viewer's receive side: a SUB socket per engine, every message validated, the newest of each topic kept.

Keeping up (30 fps and more): each loop drains the socket with ``NOBLOCK`` and keeps only the newest message
of each topic; payloads (JPEG frames, PNG masks) are decoded only for the message actually drawn, so a slow
renderer drops messages instead of lagging. A message that fails :func:`stream.wire.decode` /
:func:`stream.wire.validate` (malformed msgpack, missing fields, truncated multipart, a newer schema version)
becomes an error banner and is skipped — never an exception out of :meth:`StreamView.poll`.

Link state shown to the user:

* ``stale``: connected but no message for ``stale_s`` (default 1 s);
* ``disconnected``: the TCP peer went away (ZeroMQ socket monitor), or status messages stopped for
  ``disconnect_s`` after having arrived, or the final status said ``stopped``/``finished``/``failed``.

The :class:`~stream.view.overlay.Scene` carries the link state and the age of the newest status, so that a
stale or disconnected view shows the engine's last known state as such ("source running (last known
4.2 s ago)", dim), never as live.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from stream import wire
from stream.view.overlay import Banner, Scene, SegLayer, decode_image

log = logging.getLogger(__name__)

ERROR_SHOW_S = 3.0
MAX_DRAIN = 10_000  # safety bound on messages read per poll
ENDED_STATES = ("stopped", "finished", "failed")  # the engine's final status says it is shutting down


@dataclass
class Received:
    """One message as received (payloads kept raw until drawn)."""

    topic: str
    msg: dict[str, Any]
    payloads: list[bytes]
    t_recv_ns: int


def describe(topic: str, msg: dict[str, Any]) -> str:
    """One text line per message (``lus-view --print``)."""
    head = f"{topic:6s} seq={msg.get('seq')}"
    if topic in ("frame", "video"):
        probs = " ".join(f"{p:.2f}" for p in msg["probs"])
        lat = (msg["t_publish_ns"] - msg["t_capture_ns"]) / 1e6
        extra = f" frames={msg['frames']} clip={msg['clip']}" if topic == "video" else f" lat={lat:.1f}ms"
        score = ("tie:" + "/".join(str(c) for c in msg["tie"])) if msg.get("tie") else msg["score"]
        return f"{head} score={score} probs=[{probs}]{extra}"
    if topic == "seg":
        fr = msg.get("class_fractions")
        fr_s = f" fractions=[{' '.join(f'{x:.2f}' for x in fr)}]" if fr else ""
        return f"{head} rate={msg['rate_hz']:.2f}Hz unc={'yes' if msg.get('uncertainty') else 'no'}{fr_s}"
    if topic == "status":
        lat = msg["latency_ms"]
        p50 = "-" if lat["p50"] is None else f"{lat['p50']:.1f}"
        p99 = "-" if lat["p99"] is None else f"{lat['p99']:.1f}"
        domain = msg["lanes"]["scoring"].get("domain")
        return (f"{head} in={msg['input_fps']:.1f}fps scoring={msg['lanes']['scoring']['fps']:.1f}fps "
                f"seg={msg['lanes']['segmentation']['fps']:.1f}fps drops={msg['drops']['capture']} "
                f"p50/p99={p50}/{p99}ms source={msg['source']['state']} link={msg['security']}"
                + (f" domain={domain}" if domain else "")
                + (f" WARNING: {msg['domain_warning']}" if msg.get("domain_warning") else ""))
    if topic == "exam":
        total = msg["total"] if msg["total"] is not None else f"partial {msg['partial_total']}"
        return (f"{head} exam={msg['exam_id']} state={msg['state']} zone={msg['zone']} "
                f"scored={msg['scored']}/{msg['n_zones']} total={total}")
    if topic == "image":
        return f"{head} image {msg['image']['hw'][1]}x{msg['image']['hw'][0]} {msg['image']['encoding']}"
    return head


class StreamView:
    """State of one engine stream as seen by a viewer (socket optional: :meth:`ingest` is usable alone)."""

    def __init__(self, endpoint: str | None = None, context: zmq.Context | None = None,
                 client_key: str | None = None, server_key: str | None = None,
                 stale_s: float = 1.0, disconnect_s: float = 3.0, rcvhwm: int = 1000) -> None:
        self.endpoint = endpoint or "(local)"
        self.stale_s, self.disconnect_s = stale_s, disconnect_s
        self.latest: dict[str, Received] = {}
        self._frames: OrderedDict[int, Received] = OrderedDict()  # recent frame messages by seq
        self._seg_cache: tuple[int, SegLayer] | None = None
        self._image_cache: tuple[int, Any] | None = None
        self.errors: deque[tuple[float, str]] = deque(maxlen=20)
        self.counts: dict[str, int] = {}
        self.n_errors = 0
        self.last_msg_t: float | None = None
        self.last_status_t: float | None = None
        self.connected: bool | None = None  # None: no monitor information yet
        self.started_t = time.monotonic()
        self.sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        if endpoint is not None:
            ctx = context or zmq.Context.instance()
            sock = ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, rcvhwm)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            if client_key or server_key:
                if not (client_key and server_key):
                    raise ValueError("CURVE needs both --client-key (your *.key_secret) and --server-key "
                                     "(the engine's server.key)")
                from stream.security import configure_client

                configure_client(sock, client_key, server_key)
            self._monitor = sock.get_monitor_socket(
                zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            sock.connect(endpoint)
            self.sock = sock

    # ------------------------------------------------------------------ receiving
    def error(self, text: str, now: float | None = None) -> None:
        self.n_errors += 1
        self.errors.append((time.monotonic() if now is None else now, text))
        log.warning("%s: %s", self.endpoint, text)

    def ingest(self, parts: list[bytes], now: float | None = None) -> Received | None:
        """Decode, validate and keep one multipart message; a bad one becomes an error and returns None."""
        now = time.monotonic() if now is None else now
        self.last_msg_t = now  # bytes arrived: the link is alive even if the message is bad
        try:
            topic, msg, payloads = wire.decode(parts, check=True)  # every topic, exam included
        except wire.WireVersionError as err:
            self.error(f"skipped: {err}", now)
            return None
        except wire.WireError as err:
            head = bytes(parts[0])[:16] if parts else b""
            self.error(f"skipped bad message ({head!r}): {err}", now)
            return None
        except Exception as err:  # anything else a hostile peer can provoke: still never a crash
            self.error(f"skipped undecodable message: {type(err).__name__}: {err}", now)
            return None
        rec = Received(topic, msg, payloads, time.monotonic_ns())
        self.latest[topic] = rec
        self.counts[topic] = self.counts.get(topic, 0) + 1
        if topic == "frame":
            self._frames[msg["seq"]] = rec
            while len(self._frames) > 64:
                self._frames.popitem(last=False)
        elif topic == "status":
            self.last_status_t = now
        return rec

    def poll(self, on_message: Any = None) -> int:
        """Drain the socket (NOBLOCK) and the monitor; returns the number of messages read."""
        self._poll_monitor()
        if self.sock is None:
            return 0
        n = 0
        while n < MAX_DRAIN:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError as err:
                self.error(f"receive failed: {err}")
                break
            n += 1
            rec = self.ingest(parts)
            if on_message is not None:
                on_message(self, rec)
        return n

    def _poll_monitor(self) -> None:
        if self._monitor is None:
            return
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            ev = event["event"]
            if ev in (zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_SUCCEEDED):
                self.connected = True
            elif ev == zmq.EVENT_DISCONNECTED:
                self.connected = False
            elif ev in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                        zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self.connected = False
                self.error("security handshake failed: check --client-key/--server-key and that the engine "
                           "allows this client's public key")

    # ------------------------------------------------------------------ link state
    def link_state(self, now: float | None = None) -> str:
        """``waiting`` | ``live`` | ``stale`` | ``disconnected``."""
        now = time.monotonic() if now is None else now
        status = self.latest.get("status")
        if status is not None and status.msg["source"]["state"] in ENDED_STATES:
            return "disconnected"
        if self.connected is False and self.last_msg_t is not None:
            return "disconnected"
        if self.last_status_t is not None and now - self.last_status_t > self.disconnect_s:
            return "disconnected"
        if self.last_msg_t is None:
            return "waiting"
        return "stale" if now - self.last_msg_t > self.stale_s else "live"

    # ------------------------------------------------------------------ what to draw
    def current_image(self) -> tuple[Any, tuple[int, int, int, int], int] | None:
        """The newest ``image`` topic frame decoded (BGR), the source rect it shows, its seq."""
        rec = self.latest.get("image")
        if rec is None:
            return None
        if self._image_cache is None or self._image_cache[0] != rec.msg["seq"]:
            try:
                img = decode_image(rec.payloads[rec.msg["image"]["payload"]])
            except ValueError as err:
                self.error(f"image seq {rec.msg['seq']}: {err}")
                self.latest.pop("image")
                return None
            self._image_cache = (rec.msg["seq"], img)
        return self._image_cache[1], tuple(rec.msg["roi"]), rec.msg["seq"]

    def frame_for(self, seq: int | None) -> dict[str, Any] | None:
        """The frame message of ``seq`` when still held (so boxes match the picture), else the newest."""
        if seq is not None and seq in self._frames:
            return self._frames[seq].msg
        rec = self.latest.get("frame")
        return rec.msg if rec else None

    def seg_layer(self) -> SegLayer | None:
        rec = self.latest.get("seg")
        if rec is None:
            return None
        if self._seg_cache is None or self._seg_cache[0] != rec.msg["seq"]:
            try:
                self._seg_cache = (rec.msg["seq"], SegLayer.from_message(rec.msg, rec.payloads))
            except (ValueError, IndexError, KeyError) as err:
                self.error(f"seg seq {rec.msg['seq']}: {err}")
                self.latest.pop("seg")
                return None
        return self._seg_cache[1]

    def scene(self, image_seq: int | None = None, now: float | None = None) -> Scene:
        """A :class:`Scene` of the newest messages with the link/error banners."""
        now = time.monotonic() if now is None else now
        frame = self.frame_for(image_seq)
        banners: list[Banner] = []
        state = self.link_state(now)
        if state == "disconnected":
            banners.append(Banner("disconnected", f"DISCONNECTED from {self.endpoint}: engine stopped or "
                                                  f"unreachable"))
        elif state == "stale":
            banners.append(Banner("stale", f"STALE: no message for {now - (self.last_msg_t or now):.1f} s"))
        elif state == "waiting":
            banners.append(Banner("info", f"waiting for the engine at {self.endpoint}"))
        status = self.latest.get("status")
        if status is not None and status.msg["security"] == "insecure":
            banners.append(Banner("insecure", "INSECURE link: engine publishes unencrypted (--insecure)"))
        recent = [text for t, text in self.errors if now - t <= ERROR_SHOW_S]
        if recent:
            banners.append(Banner("error", f"{len(recent)} bad message(s): {recent[-1]}"))
        latency = publish = None
        if frame is not None:
            publish = (frame["t_publish_ns"] - frame["t_capture_ns"]) / 1e6
            age = (time.monotonic_ns() - frame["t_capture_ns"]) / 1e6
            latency = age if 0 <= age < 10_000 else None  # same host only (monotonic clocks)
        def newest(topic: str) -> dict[str, Any] | None:
            rec = self.latest.get(topic)
            return rec.msg if rec is not None else None

        status_age = None if self.last_status_t is None else max(0.0, now - self.last_status_t)
        return Scene(frame=frame, video=newest("video"), seg=self.seg_layer(), exam=newest("exam"),
                     status=newest("status"),
                     banners=banners, latency_ms=latency, publish_latency_ms=publish, title=self.endpoint,
                     link=state, status_age_s=status_age)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.sock.disable_monitor()
            self.sock.close(0)
            self.sock = None
        if self._monitor is not None:
            self._monitor.close(0)
            self._monitor = None
