"""The ZeroMQ PUB side: non-blocking sends, bounded queues, loopback-only binding, recording.

A subscriber that stops reading must cost the engine nothing: the PUB socket has a small send
high-water mark (``SNDHWM``), every send is ``NOBLOCK`` and a full queue drops the message for the
slow subscriber (ZeroMQ's PUB semantics) and counts it; ``LINGER`` is short so that closing never
waits on a dead peer. Several lanes publish from their own threads, so sends are serialised by a
lock (a ZeroMQ socket is not thread-safe); the recorder is appended under the same lock, so the
file holds messages in publish order.

Validation: every published message can be checked against the wire schema (``stream.wire.validate``,
31.8 µs against 3.4 µs to pack and send, ``docs/performance.md``). ``validate="all"`` checks each one
(tests, debugging: ``LUS_WIRE_VALIDATE=all`` turns it on everywhere); ``"sample"`` (the engine's
default) checks the first message of each topic and then one in :data:`SAMPLE_EVERY`; ``"off"`` none.
A message that fails is a bug: :class:`stream.wire.WireError` is raised naming the field, in every mode
that checked it.

Binding to any address other than loopback is refused unless the socket is a CURVE server
(``curve=``) or the ``insecure`` opt-out is given (frames and results are patient data); the
policy is :func:`stream.security.check_bind`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import zmq

from stream import wire
from stream.recorder import Recorder
from stream.security import CurveServer, check_bind
from stream.security import SecurityError as BindRefused

DEFAULT_PUB = "tcp://127.0.0.1:5555"
DEFAULT_SNDHWM = 64
DEFAULT_LINGER_MS = 100
VALIDATE_MODES = ("all", "sample", "off")
SAMPLE_EVERY = 100

log = logging.getLogger(__name__)


def check_bind_address(
    endpoint: str, what: str = "socket", curve: bool = False, insecure: bool = False
) -> str:
    """The socket's security mode (``loopback`` | ``curve`` | ``insecure``), or :class:`BindRefused`.

    Non-loopback binds need CURVE (``curve``) or the loudly logged ``insecure`` opt-out; the policy
    itself lives in :func:`stream.security.check_bind`.
    """
    try:
        return check_bind(endpoint, curve_configured=curve, insecure=insecure)
    except BindRefused as err:
        raise BindRefused(f"{what}: {err}") from None


def bind_socket(sock: zmq.Socket, endpoint: str, what: str, curve: CurveServer | None) -> None:
    """Make ``sock`` a CURVE server when keys are given, then bind it; a failed bind closes the
    socket and raises :class:`OSError` naming the endpoint (the usual cause: another engine)."""
    if curve is not None:
        curve.apply(sock)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as err:
        sock.close(0)
        raise OSError(f"cannot bind the {what} to {endpoint}: {err} (is another engine running?)") from err


def validation_mode(validate: bool | str) -> str:
    """``True``/``False`` (old callers) or a mode name → ``"all"`` | ``"sample"`` | ``"off"``;
    ``LUS_WIRE_VALIDATE=all`` (tests, debugging) overrides a sampling or off default."""
    mode = ("all" if validate else "off") if isinstance(validate, bool) else validate
    if mode not in VALIDATE_MODES:
        raise ValueError(f"validate={validate!r}: use one of {list(VALIDATE_MODES)}")
    return "all" if os.environ.get("LUS_WIRE_VALIDATE") == "all" else mode


class Publisher:
    """Publishes wire messages on a PUB socket and appends them to an optional recorder."""

    def __init__(
        self,
        endpoint: str = DEFAULT_PUB,
        stream_id: str = "lus",
        recorder: Recorder | None = None,
        sndhwm: int = DEFAULT_SNDHWM,
        linger_ms: int = DEFAULT_LINGER_MS,
        validate: bool | str = True,
        context: zmq.Context | None = None,
        curve: CurveServer | None = None,
        insecure: bool = False,
    ) -> None:
        self.security = check_bind_address(endpoint, "PUB socket", curve is not None, insecure)
        self.endpoint = endpoint
        self.stream_id = stream_id
        self.recorder = recorder
        self.validate = validation_mode(validate)
        self.validated: dict[str, int] = {}  # messages checked per topic
        self.sent: dict[str, int] = {}
        self.unrecorded: set[str] = set()  # topics published but not written to the recorder
        self.dropped = 0
        self.dropped_by_topic: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, int(sndhwm))
        self._sock.setsockopt(zmq.LINGER, int(linger_ms))
        bind_socket(self._sock, endpoint, "PUB socket", curve)
        self.closed = False

    def publish(
        self, topic: str, msg: dict[str, Any], payloads: Sequence[bytes] = (), ready_ns: int | None = None
    ) -> int:
        """Stamp ``t_publish_ns``, validate, send without blocking, record. Returns t_publish_ns.

        With ``ready_ns`` (when the message was complete), ``stages_ns.publish`` is set to the time
        from then to ``t_publish_ns`` (waiting for the socket lock included).
        """
        with self._lock:
            if self.closed:
                raise RuntimeError("publisher is closed")
            msg["t_publish_ns"] = max(time.monotonic_ns(), int(msg.get("t_capture_ns", 0)))
            if ready_ns is not None and isinstance(msg.get("stages_ns"), dict):
                msg["stages_ns"]["publish"] = max(0, msg["t_publish_ns"] - ready_ns)
            n = self.sent.get(topic, 0) + self.dropped_by_topic.get(topic, 0)
            check = self.validate == "all" or (self.validate == "sample" and n % SAMPLE_EVERY == 0)
            if check:
                self.validated[topic] = self.validated.get(topic, 0) + 1
            parts = wire.encode(topic, msg, payloads, check=check)
            try:
                self._sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                self.sent[topic] = self.sent.get(topic, 0) + 1
            except zmq.Again:  # HWM reached with no peer able to take it: drop, never block
                self.dropped += 1
                self.dropped_by_topic[topic] = self.dropped_by_topic.get(topic, 0) + 1
            if self.recorder is not None and topic not in self.unrecorded:
                self.recorder.append(topic, msg, payloads, packed=parts[1])
            return msg["t_publish_ns"]

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._sock.close(linger=DEFAULT_LINGER_MS)
