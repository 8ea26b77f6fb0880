"""The lung-zone exam protocol: a pure-Python state machine, its control commands and its ``exam`` message.

A bedside LUS exam scores each lung zone and sums the zone scores (Soldati et al., J Ultrasound Med 2020:
score 0-3 per zone; 14 zones → total 0-42). The clinician rests the probe on a zone, the engine's clip
aggregate (paper Sec. III-B, the uninorm fold) settles, and "freeze" takes the current clip score as the
zone score. The state machine::

    idle ──exam_start──▶ running ──exam_stop──▶ stopped ──exam_start──▶ running …
                          │  zone Z      : Z becomes current, the clip aggregate resets (on_zone_change)
                          │  freeze [Z]  : Z's score := latest clip score/probs/frame range of Z's clip
                          │  redo [Z]    : Z's score cleared, Z current, aggregate reset

Protocols (zone names: side R/L, region P(osterior)/L(ateral)/A(nterior), index from cranial to caudal;
BLUE points: side, 1 upper / 2 lower BLUE point, 3 PLAPS point; tables in :mod:`stream.exam_schema`)::

    soldati14: RP1 RP2 RP3 RL1 RL2 RA1 RA2  LP1 LP2 LP3 LL1 LL2 LA1 LA2   (max total 42)
    soldati12: RP1 RP2     RL1 RL2 RA1 RA2  LP1 LP2     LL1 LL2 LA1 LA2   (max total 36)
    blue6:     L1 L2 L3  R1 R2 R3                                          (max total 18)

Patient identifiers: anything published (and so recorded to disk) carries only
``sha256(salt + ":" + patient_id)`` in hex. ``salt`` is the site salt (``LUS_PATIENT_SALT`` or the engine's
option) — keep it secret: patient ids are short, so an unsalted or public-salt hash is easy to reverse; with
it the same patient gets the same hash across exams at that site. Without a site salt a random per-exam
salt is used and never written, so the hash only links messages within that exam. ``store_patient_id=True``
(``--store-patient-id``) writes the identifier in the clear instead.

The engine feeds the state with its own ``video`` messages (:meth:`ExamSession.observe_video`), registers
:func:`control_commands` into its control table and publishes :meth:`ExamSession.body` on topic ``exam``
after every change (``on_change``). The ``exam`` message's schema (and its total checks) belongs to
:mod:`stream.wire`; this module imports it, never the other way round.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream import wire
from stream.exam_schema import (  # noqa: F401 - re-exported: the zone tables live in stream.exam_schema
    BLUE_POINTS,
    DEFAULT_PROTOCOL,
    EVENTS,
    EXAM_STATES,
    MAX_ZONE_SCORE,
    N_SCORES,
    PROTOCOL_TITLES,
    PROTOCOLS,
    REGIONS,
    SIDES,
    protocol_for,
    zone_label,
)

try:  # the control server's error type, when the engine's control module is importable
    from stream.control import CommandError
except ImportError:  # pragma: no cover - the control module always ships with stream/

    class CommandError(Exception):  # type: ignore[no-redef]
        """Raised by a handler to reply ``{"ok": false, "error": ...}``."""


SALT_ENV = "LUS_PATIENT_SALT"


def hash_patient_id(patient_id: str, salt: str) -> str:
    """``sha256(salt + ":" + patient_id)`` as hex (see the module docstring for the salt's role)."""
    return hashlib.sha256(f"{salt}:{patient_id}".encode()).hexdigest()


@dataclass
class ZoneResult:
    """One zone's entry in the exam table (score None until frozen)."""

    zone: str
    score: int | None = None
    probs: list[float] | None = None
    frames: int = 0                # frames in the clip aggregate the score rests on
    first_seq: int | None = None   # frame range of that clip
    last_seq: int | None = None
    clip: int | None = None        # the engine's clip counter of that aggregate
    frozen_unix_s: float | None = None

    def as_map(self) -> dict[str, Any]:
        return {
            "zone": self.zone, "label": zone_label(self.zone), "score": self.score, "probs": self.probs,
            "frames": self.frames, "first_seq": self.first_seq, "last_seq": self.last_seq, "clip": self.clip,
            "frozen_unix_s": self.frozen_unix_s,
        }


@dataclass
class _Clip:
    """What the engine has aggregated since the current zone began (from its ``video`` messages)."""

    clip: int | None = None
    score: int | None = None
    probs: list[float] | None = None
    frames: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    tie: list[int] = field(default_factory=list)  # the tied scores when the clip score is no decision


@dataclass
class ExamSession:
    """The exam state machine (thread-safe: the control thread and the publishing lane both touch it)."""

    store_patient_id: bool = False
    salt: str | None = None
    state: str = "idle"
    exam_id: str | None = None
    protocol: str = DEFAULT_PROTOCOL
    patient: str | None = None
    zone: str | None = None
    table: dict[str, ZoneResult] = field(default_factory=dict)
    started_unix_s: float | None = None
    stopped_unix_s: float | None = None
    last_event: str = "update"
    _clip: _Clip = field(default_factory=_Clip)
    _min_clip: int | None = None
    _last_seq: int = 0
    _last_t_capture_ns: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        if self.salt is None:
            self.salt = os.environ.get(SALT_ENV) or None

    # ------------------------------------------------------------------ protocol
    @property
    def zones(self) -> tuple[str, ...]:
        return PROTOCOLS[self.protocol]

    def start(self, exam_id: str | None, patient_id: str | None = None, protocol: str = DEFAULT_PROTOCOL
              ) -> None:
        """Begin a new exam (an exam already running is replaced: its table was published as it went)."""
        if not isinstance(exam_id, str) or not exam_id.strip():
            raise CommandError("exam_start needs a non-empty 'exam_id' string, e.g. {'cmd': 'exam_start', "
                               "'exam_id': 'bed12-2026-11-27'}")
        if protocol not in PROTOCOLS:
            raise CommandError(f"unknown protocol {protocol!r}: use one of {sorted(PROTOCOLS)}")
        if patient_id is not None and not isinstance(patient_id, str):
            raise CommandError("'patient_id' must be a string")
        with self._lock:
            self.state, self.exam_id, self.protocol = "running", exam_id.strip(), protocol
            self.patient = None
            if patient_id:
                salt = self.salt or secrets.token_hex(16)  # per-exam salt: never written anywhere
                self.patient = patient_id if self.store_patient_id else hash_patient_id(patient_id, salt)
            self.table = {z: ZoneResult(z) for z in self.zones}
            self.zone = None
            self.started_unix_s, self.stopped_unix_s = time.time(), None
            self._new_clip(None)
            self.last_event = "start"

    def _require_running(self, what: str) -> None:
        if self.state != "running":
            raise CommandError(f"{what}: no exam is running; start one with {{'cmd': 'exam_start', "
                               f"'exam_id': ...}}")

    def resolve_zone(self, zone: Any) -> str:
        """A zone name (case-insensitive), its 1-based number in the protocol, or ``"next"`` (first unscored
        zone after the current one)."""
        zones = self.zones
        if zone == "next":
            start = zones.index(self.zone) + 1 if self.zone else 0
            for name in zones[start:] + zones[:start]:
                if self.table[name].score is None:
                    return name
            raise CommandError("every zone is scored: stop the exam or redo a zone")
        if isinstance(zone, int) and not isinstance(zone, bool):
            if 1 <= zone <= len(zones):
                return zones[zone - 1]
            raise CommandError(f"zone number {zone} is outside 1..{len(zones)} for {self.protocol}")
        if isinstance(zone, str) and zone.upper() in zones:
            return zone.upper()
        raise CommandError(f"unknown zone {zone!r} for {self.protocol}: use one of {list(zones)}, "
                           f"a number 1..{len(zones)} or 'next'")

    def set_zone(self, zone: Any, new_clip: int | None = None) -> str:
        """Make ``zone`` current; the caller resets the clip aggregate (``new_clip``: its new clip id)."""
        with self._lock:
            self._require_running("zone")
            name = self.resolve_zone(zone)
            self.zone = name
            self._new_clip(new_clip)
            self.last_event = "zone"
            return name

    def _new_clip(self, min_clip: int | None) -> None:
        self._clip = _Clip()
        self._min_clip = min_clip

    def observe_video(self, msg: dict[str, Any]) -> None:
        """Feed one of the engine's ``video`` messages (the clip aggregate after a frame)."""
        with self._lock:
            self._last_seq = int(msg.get("seq", self._last_seq))
            self._last_t_capture_ns = int(msg.get("t_capture_ns", self._last_t_capture_ns))
            clip = msg.get("clip")
            if self._min_clip is not None and clip is not None and clip < self._min_clip:
                return  # still the aggregate from before the zone change
            c = self._clip
            if c.clip is not None and clip is not None and clip != c.clip:
                self._clip = c = _Clip()  # the engine reset its aggregate: a new clip in this zone
            if c.first_seq is None:
                c.first_seq = int(msg["seq"])
            c.clip, c.score, c.probs = clip, int(msg["score"]), [float(p) for p in msg["probs"]]
            c.tie = [int(s) for s in msg.get("tie") or []]
            c.frames, c.last_seq = int(msg.get("frames", c.frames + 1)), int(msg["seq"])

    def freeze(self, zone: Any = None) -> ZoneResult:
        """Take the current clip score as the score of ``zone`` (default: the current zone)."""
        with self._lock:
            self._require_running("freeze")
            name = self.zone if zone is None else self.resolve_zone(zone)
            if name is None:
                raise CommandError("freeze: no zone is selected; send {'cmd': 'zone', 'zone': 'RP1'} first")
            if name != self.zone:
                raise CommandError(f"freeze: {name} is not the current zone ({self.zone}); the clip score "
                                   f"belongs to {self.zone}")
            c = self._clip
            if c.score is None:
                raise CommandError(f"freeze: no frame has been scored in {name} yet; hold the probe on the "
                                   f"zone until the clip score shows")
            if c.tie:
                raise CommandError(f"freeze: the clip score of {name} is a tie between scores "
                                   f"{'/'.join(map(str, c.tie))} after {c.frames} frames: no score to take; "
                                   "keep scanning the zone and freeze again, or redo it")
            result = ZoneResult(name, c.score, c.probs, c.frames, c.first_seq, c.last_seq, c.clip,
                                time.time())
            self.table[name] = result
            self.last_event = "freeze"
            return result

    def redo(self, zone: Any = None, new_clip: int | None = None) -> str:
        """Clear a zone's score and make it current again (the caller resets the clip aggregate)."""
        with self._lock:
            self._require_running("redo")
            name = self.zone if zone is None else self.resolve_zone(zone)
            if name is None:
                raise CommandError("redo: name the zone, e.g. {'cmd': 'redo', 'zone': 'LA2'}")
            self.table[name] = ZoneResult(name)
            self.zone = name
            self._new_clip(new_clip)
            self.last_event = "redo"
            return name

    def stop(self) -> None:
        with self._lock:
            self._require_running("exam_stop")
            self.state, self.stopped_unix_s, self.zone = "stopped", time.time(), None
            self.last_event = "stop"

    # ------------------------------------------------------------------ results
    def totals(self) -> tuple[int, int, int | None]:
        """(zones scored, partial total, total or None until every zone is scored)."""
        scores = [r.score for r in self.table.values() if r.score is not None]
        partial = int(sum(scores))
        return len(scores), partial, partial if self.table and len(scores) == len(self.table) else None

    def body(self) -> dict[str, Any]:
        """The ``exam`` message's fields (without the common header; see :meth:`message`)."""
        with self._lock:
            scored, partial, total = self.totals()
            c = self._clip
            return {
                "exam_id": self.exam_id,
                "state": self.state,
                "event": self.last_event,
                "protocol": self.protocol,
                "patient": self.patient,
                "patient_id_stored": bool(self.store_patient_id and self.patient is not None),
                "zone": self.zone,
                "zones": [self.table[z].as_map() for z in self.zones] if self.table else [],
                "current": {"score": c.score, "probs": c.probs, "frames": c.frames, "first_seq": c.first_seq,
                            "last_seq": c.last_seq, "clip": c.clip},
                "scored": scored,
                "n_zones": len(self.zones),
                "partial_total": partial,
                "total": total,
                "max_total": MAX_ZONE_SCORE * len(self.zones),
                "started_unix_s": self.started_unix_s,
                "stopped_unix_s": self.stopped_unix_s,
            }

    def message(self, stream_id: str) -> dict[str, Any]:
        """A complete ``exam`` wire map: header (last frame seen) + :meth:`body`."""
        with self._lock:
            t = self._last_t_capture_ns or time.monotonic_ns()
            return {**wire.header(stream_id, self._last_seq, t, t), **self.body()}


# ---------------------------------------------------------------------- control commands
Handler = Callable[[dict[str, Any]], dict[str, Any] | None]

COMMAND_HELP = {
    "exam_start": "start an exam: {'exam_id': str, 'patient_id': str (optional, hashed unless "
                  "--store-patient-id), 'protocol': 'soldati14'|'soldati12'|'blue6'}",
    "zone": "select the zone being scanned ({'zone': 'RP1' | number | 'next'}); resets the clip aggregate",
    "freeze": "take the current clip score as the current zone's score",
    "redo": "clear a zone's score and scan it again ({'zone': ...}, default the current zone)",
    "exam_stop": "end the exam (the table and total stay published)",
    "exam": "the current exam table",
}


def control_commands(
    exam: ExamSession,
    on_zone_change: Callable[[], int | None] | None = None,
    on_change: Callable[[ExamSession], None] | None = None,
) -> dict[str, Handler]:
    """Handlers for the control table: ``ControlServer.register(name, handler, COMMAND_HELP[name])``.

    ``on_zone_change()`` resets the engine's clip aggregate and may return the new clip id (so that video
    messages of the old clip still in flight are not counted for the new zone). ``on_change(exam)`` runs
    after every successful command; the engine publishes ``exam.message(stream_id)`` there. Every reply
    carries the exam table as ``"exam"``.
    """

    def changed() -> dict[str, Any]:
        if on_change is not None:
            on_change(exam)
        return {"exam": exam.body()}

    def reset_clip() -> int | None:
        return on_zone_change() if on_zone_change is not None else None

    def start(req: dict[str, Any]) -> dict[str, Any]:
        exam.start(req.get("exam_id"), req.get("patient_id"), req.get("protocol", DEFAULT_PROTOCOL))
        reset_clip()
        return changed()

    def zone(req: dict[str, Any]) -> dict[str, Any]:
        if "zone" not in req:
            raise CommandError("zone needs {'zone': 'RP1' | number | 'next'}")
        exam._require_running("zone")
        name = exam.resolve_zone(req["zone"])  # validate before touching the engine
        exam.set_zone(name, reset_clip())  # (no exam lock held while the engine resets: no lock-order risk)
        return changed()

    def freeze(req: dict[str, Any]) -> dict[str, Any]:
        exam.freeze(req.get("zone"))
        return changed()

    def redo(req: dict[str, Any]) -> dict[str, Any]:
        exam._require_running("redo")
        name = exam.zone if req.get("zone") is None else exam.resolve_zone(req["zone"])
        if name is None:
            raise CommandError("redo: name the zone, e.g. {'cmd': 'redo', 'zone': 'LA2'}")
        exam.redo(name, reset_clip())
        return changed()

    def stop(_req: dict[str, Any]) -> dict[str, Any]:
        exam.stop()
        return changed()

    def show(_req: dict[str, Any]) -> dict[str, Any]:
        return {"exam": exam.body()}

    return {"exam_start": start, "zone": zone, "freeze": freeze, "redo": redo, "exam_stop": stop,
            "exam": show}


# The exam topic's schema is owned by stream.wire (validated by wire.validate("exam", msg)); these names
# refer to the same objects, for callers that read them from here.
EXAM_REQUIRED = wire.EXAM_REQUIRED
EXAM_OPTIONAL = wire.EXAM_OPTIONAL


# ---------------------------------------------------------------------- wiring into the engine
def summary(exam: ExamSession) -> dict[str, Any] | None:
    """A short map for the engine's ``status.exam`` field (None when no exam was started)."""
    if exam.exam_id is None:
        return None
    scored, partial, total = exam.totals()
    return {"exam_id": exam.exam_id, "state": exam.state, "zone": exam.zone, "scored": scored,
            "n_zones": len(exam.zones), "partial_total": partial, "total": total}


class ExamStage:
    """The exam as a stage of the engine's graph (``stream.pipeline.compose`` wires it): it consumes
    every ``video`` message (:meth:`on_video`, scoring thread) and the exam control commands
    (:meth:`register`, control thread), resets the clip aggregate at each zone change (``reset_clip``),
    and publishes the ``exam`` message after every change (``publish``). :meth:`summary` is the status
    message's ``exam`` field."""

    def __init__(self, session: ExamSession, stream_id: str, publish: Callable[[dict[str, Any]], Any],
                 reset_clip: Callable[[], int | None] | None = None) -> None:
        self.session = session
        self.stream_id = stream_id
        self._publish = publish
        self.handlers = control_commands(session, on_zone_change=reset_clip, on_change=self._changed)

    def _changed(self, session: ExamSession) -> None:
        self._publish(session.message(self.stream_id))

    def on_video(self, msg: dict[str, Any]) -> None:
        self.session.observe_video(msg)

    def register(self, server: Any) -> None:
        """Add the exam commands to a :class:`stream.control.ControlServer`."""
        for name, handler in self.handlers.items():
            server.register(name, handler, COMMAND_HELP[name])

    def command(self, name: str, **req: Any) -> dict[str, Any] | None:
        """Run one exam command in-process (what a control request does), e.g. for scripted exams."""
        return self.handlers[name](req)

    def summary(self) -> dict[str, Any] | None:
        return summary(self.session)


# ---------------------------------------------------------------------- scripted demo exam
# A severity per zone for the demo walk (14 zones: total 1+0+1+2+1+0+0 + 2+3+2+1+1+0+1 = 15).
DEMO_SCORES = (1, 0, 1, 2, 1, 0, 0, 2, 3, 2, 1, 1, 0, 1)


def demo_schedule(scores: Sequence[int], dwell_frames: int, lead_in: int = 0) -> list[tuple[int, int]]:
    """The synthetic source's ``(start_frame, score)`` schedule: zone ``i`` is shown for ``dwell_frames``
    frames from ``lead_in + i * dwell_frames`` (the lead-in, while the exam starts, shows zone 0 too)."""
    if dwell_frames < 4:
        raise ValueError(f"dwell_frames must be >= 4 (zone, settle, freeze), got {dwell_frames}")
    return [(0 if i == 0 else lead_in + i * dwell_frames, int(s)) for i, s in enumerate(scores)]


def run_scripted_exam(pub: str, ctrl: str, scores: Sequence[int] = DEMO_SCORES, dwell_frames: int = 90,
                      lead_in: int = 0, exam_id: str = "demo-exam", margin: int | None = None,
                      timeout_s: float | None = None, stop_event: threading.Event | None = None,
                      client_key: str | None = None, server_key: str | None = None) -> dict[str, Any]:
    """Walk the zones through the engine's control socket, in step with its frames (seq from ``frame``).

    Zone ``i`` is on screen for frames ``[lead_in + i*dwell, lead_in + (i+1)*dwell)`` (see
    :func:`demo_schedule`); the walk selects it ``margin`` frames after it starts and freezes ``margin``
    frames before it ends, then stops the exam. Returns the final exam table (the ``exam`` reply).
    """
    import zmq

    protocol = protocol_for(len(scores))
    margin = max(1, dwell_frames // 6) if margin is None else margin
    timeout_s = (len(scores) * dwell_frames + lead_in) / 10.0 + 30 if timeout_s is None else timeout_s
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"frame")
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 5000)
    if client_key and server_key:
        from stream.security import configure_client

        configure_client(sub, client_key, server_key)
        configure_client(req, client_key, server_key)
    sub.connect(pub)
    req.connect(ctrl)

    def command(name: str, **args: Any) -> dict[str, Any]:
        req.send(wire.pack({"cmd": name, **args}))
        return wire.unpack(req.recv())

    try:
        deadline = time.monotonic() + timeout_s
        while not sub.poll(200):  # the engine is running once its first frame is published
            if time.monotonic() > deadline or (stop_event is not None and stop_event.is_set()):
                raise TimeoutError(f"scripted exam: no frame from {pub}")
        reply = command("exam_start", exam_id=exam_id, protocol=protocol)
        if not reply.get("ok"):
            raise RuntimeError(f"exam_start refused: {reply.get('error')}")
        zone_i, selected = 0, False
        while zone_i < len(scores):
            if time.monotonic() > deadline or (stop_event is not None and stop_event.is_set()):
                raise TimeoutError(f"scripted exam: zone {zone_i + 1} of {len(scores)} not done in time")
            if not sub.poll(200):
                continue
            _topic, msg, _ = wire.decode(sub.recv_multipart())
            seq = msg["seq"]
            start = lead_in + zone_i * dwell_frames
            if not selected and seq >= start + margin:
                reply = command("zone", zone=zone_i + 1)
                selected = bool(reply.get("ok"))
            elif selected and seq >= start + dwell_frames - margin:
                reply = command("freeze")
                if reply.get("ok"):
                    zone_i, selected = zone_i + 1, False
        return command("exam_stop").get("exam", {})
    finally:
        sub.close()
        req.close()


def start_demo_walk(engine: Any, pub: str, ctrl: str, scores: Sequence[int] = DEMO_SCORES,
                    dwell_frames: int = 90, lead_in: int = 30, stop_engine: bool = True) -> threading.Thread:
    """Run :func:`run_scripted_exam` beside an engine (a daemon thread); optionally stop the engine after."""

    def walk() -> None:
        try:
            table = run_scripted_exam(pub, ctrl, scores, dwell_frames, lead_in)
            print(f"demo exam done: total {table.get('total')}/{table.get('max_total')}", flush=True)
        except Exception as err:  # the demo must not take the engine down
            print(f"demo exam failed: {err}", flush=True)
        finally:
            if stop_engine:
                engine.request_stop()

    thread = threading.Thread(target=walk, name="demo-exam", daemon=True)
    thread.start()
    return thread
