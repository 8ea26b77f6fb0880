"""Exam protocol: a 14-zone walk through the real control socket gives the expected table and total."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from stream import control, wire
from stream import exam as ex
from stream.exam import CommandError, ExamSession

SCORES14 = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1]  # hand total: 3 * (0+1+2+3) + 0 + 1 = 19


def _probs(score: int, confidence: float = 0.7) -> list[float]:
    p = np.full(4, (1 - confidence) / 3)
    p[score] = confidence
    return p.tolist()


class FakeEngine:
    """What the pipeline does around the exam: a clip counter reset on zone change, video messages."""

    def __init__(self, session: ExamSession) -> None:
        self.session = session
        self.clip = 0
        self.seq = 0
        self.frames = 0
        self.published: list[dict] = []

    def reset(self) -> int:
        self.clip += 1
        self.frames = 0
        return self.clip

    def video(self, score: int, n: int = 5, clip: int | None = None) -> None:
        late = clip is not None  # a message of an older clip, still in flight after the reset
        for k in range(n):
            self.seq += 1
            self.frames += 0 if late else 1
            msg = {**wire.header("t", self.seq, 1000 + self.seq, 2000 + self.seq), "probs": _probs(score),
                   "score": score, "kind": "uninorm", "window": None,
                   "frames": k + 1 if late else self.frames, "clip": clip if late else self.clip}
            wire.validate("video", msg)
            self.session.observe_video(msg)

    def publish(self, session: ExamSession) -> None:
        msg = session.message("t")
        wire.validate("exam", msg)
        self.published.append(msg)


def test_protocol_zone_names() -> None:
    z14, z12 = ex.PROTOCOLS["soldati14"], ex.PROTOCOLS["soldati12"]
    assert len(z14) == 14 and len(set(z14)) == 14 and len(z12) == 12
    assert z14[:7] == ("RP1", "RP2", "RP3", "RL1", "RL2", "RA1", "RA2") and z14[7] == "LP1"
    assert "RP3" not in z12 and "LP3" not in z12
    assert ex.zone_label("LA2") == "left anterior 2"


def test_zone_walk_over_control_socket(tmp_path: Path) -> None:
    session = ExamSession()
    engine = FakeEngine(session)
    endpoint = f"ipc://{tmp_path}/ctrl"
    server = control.ControlServer(endpoint)
    handlers = ex.control_commands(session, on_zone_change=engine.reset, on_change=engine.publish)
    for name, handler in handlers.items():
        server.register(name, handler, ex.COMMAND_HELP[name])
    server.start()

    def cmd(name: str, **args) -> dict:
        reply = control.request(endpoint, name, **args)
        assert reply["ok"], reply
        return reply

    try:
        rep = cmd("exam_start", exam_id="bed7", patient_id="MRN-0042")
        assert rep["exam"]["state"] == "running" and rep["exam"]["total"] is None
        assert rep["exam"]["patient"] != "MRN-0042" and len(rep["exam"]["patient"]) == 64
        # freezing before any zone / before any frame is refused with a reason, the engine keeps going
        bad = control.request(endpoint, "freeze")
        assert not bad["ok"] and "zone" in bad["error"]
        for i, (zone, score) in enumerate(zip(ex.PROTOCOLS["soldati14"], SCORES14, strict=True)):
            cmd("zone", zone="next" if i % 2 else zone.lower())
            engine.video(3 - score, n=2, clip=engine.clip - 1)  # late messages of the previous clip: ignored
            if i == 0:
                assert not control.request(endpoint, "freeze")["ok"]  # nothing scored in this zone yet
            engine.video(score, n=4 + i)
            body = cmd("freeze")["exam"]
            assert body["zones"][i]["score"] == score
            assert body["scored"] == i + 1 and body["partial_total"] == sum(SCORES14[: i + 1])
            assert body["total"] is None or i == 13
        entry = body["zones"][3]
        assert entry["zone"] == "RL1" and entry["frames"] == 7 and entry["probs"] == pytest.approx(_probs(3))
        assert entry["last_seq"] - entry["first_seq"] == 6  # the 7 frames of RL1's own clip
        assert body["total"] == 19 and body["max_total"] == 42
        # redo a zone: its score clears, the total is partial again, then a new freeze
        body = cmd("redo", zone="RP2")["exam"]
        assert body["zone"] == "RP2" and body["zones"][1]["score"] is None and body["total"] is None
        assert body["partial_total"] == 19 - 1
        engine.video(3, n=3)
        body = cmd("freeze")["exam"]
        assert body["total"] == 21
        assert not control.request(endpoint, "zone", zone="XX9")["ok"]
        body = cmd("exam_stop")["exam"]
        assert body["state"] == "stopped" and body["total"] == 21
    finally:
        server.close()
    assert engine.clip == 1 + 14 + 1  # start + 14 zone changes + redo each reset the aggregate
    assert [m["event"] for m in engine.published][:3] == ["start", "zone", "freeze"]
    assert engine.published[-1]["total"] == 21


def test_twelve_zone_total_and_numbers() -> None:
    session = ExamSession()
    engine = FakeEngine(session)
    session.start("e12", protocol="soldati12")
    for n in range(1, 13):
        session.set_zone(n, engine.reset())
        engine.video(2)
        session.freeze()
    scored, partial, total = session.totals()
    assert (scored, partial, total) == (12, 24, 24)
    assert session.body()["max_total"] == 36
    with pytest.raises(CommandError, match=r"1\.\.12"):
        session.resolve_zone(13)


def test_patient_id_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ex.SALT_ENV, "site-secret")
    s = ExamSession()
    s.start("a", patient_id="12345")
    assert s.body()["patient"] == hashlib.sha256(b"site-secret:12345").hexdigest()
    assert s.body()["patient_id_stored"] is False
    kept = ExamSession(store_patient_id=True)
    kept.start("b", patient_id="12345")
    assert kept.body()["patient"] == "12345" and kept.body()["patient_id_stored"] is True
    monkeypatch.delenv(ex.SALT_ENV)
    a, b = ExamSession(), ExamSession()
    a.start("c", patient_id="12345")
    b.start("d", patient_id="12345")
    assert a.body()["patient"] != b.body()["patient"]  # random per-exam salt: no cross-exam link


def test_commands_outside_a_running_exam() -> None:
    handlers = ex.control_commands(ExamSession())
    assert set(handlers) == set(ex.COMMAND_HELP)
    for name in ("zone", "freeze", "redo", "exam_stop"):
        with pytest.raises(CommandError, match="no exam is running"):
            handlers[name]({"zone": "RP1"})
    with pytest.raises(CommandError, match="exam_id"):
        handlers["exam_start"]({})
    with pytest.raises(CommandError, match="protocol"):
        handlers["exam_start"]({"exam_id": "x", "protocol": "blue"})


def test_wire_validate_rejects_inconsistent_exam_totals() -> None:
    s = ExamSession()
    s.start("x")
    s.set_zone("RP1")
    s.observe_video({**wire.header("t", 1, 1, 1), "probs": _probs(2), "score": 2, "frames": 1, "clip": 0})
    s.freeze()
    msg = s.message("t")
    wire.validate("exam", msg)
    msg["partial_total"] = 5
    with pytest.raises(wire.WireError, match="partial_total"):
        wire.validate("exam", msg)


def test_wire_validate_checks_exam_fields() -> None:
    """stream.wire.validate checks the exam fields (the one validator of the ``exam`` topic): a map
    without its zone table is refused, naming the field."""
    msg = ExamSession().message("t")
    wire.validate("exam", msg)
    del msg["zones"]
    with pytest.raises(wire.WireError, match="zones"):
        wire.validate("exam", msg)


# ---------------------------------------------------------------------- BLUE protocol (blue6)
BLUE_SCORES = [2, 1, 3, 0, 1, 2]  # L1 L2 L3 R1 R2 R3: total 9


def test_blue_protocol_zone_names_and_labels() -> None:
    assert ex.PROTOCOLS["blue6"] == ("L1", "L2", "L3", "R1", "R2", "R3")
    assert ex.zone_label("L1") == "left upper BLUE point"
    assert ex.zone_label("R2") == "right lower BLUE point"
    assert ex.zone_label("L3") == "left PLAPS point"
    assert ex.zone_label("RP2") == "right posterior 2"  # Soldati labels unchanged


def test_blue_total_over_all_zones_then_redo() -> None:
    session = ExamSession()
    engine = FakeEngine(session)
    handlers = ex.control_commands(session, on_zone_change=engine.reset, on_change=engine.publish)
    body = handlers["exam_start"]({"exam_id": "blue", "protocol": "blue6"})["exam"]
    assert body["n_zones"] == 6 and body["max_total"] == 18 and body["total"] is None
    for i, score in enumerate(BLUE_SCORES):
        handlers["zone"]({"zone": "next" if i % 2 else ex.PROTOCOLS["blue6"][i].lower()})
        engine.video(score, n=3 + i)
        body = handlers["freeze"]({})["exam"]
        assert body["zones"][i]["score"] == score and body["scored"] == i + 1
        assert body["partial_total"] == sum(BLUE_SCORES[: i + 1])
        assert body["total"] is None or i == 5
    assert body["total"] == 9 and [z["zone"] for z in body["zones"]] == list(ex.PROTOCOLS["blue6"])
    body = handlers["redo"]({"zone": "L3"})["exam"]
    assert body["zone"] == "L3" and body["total"] is None and body["partial_total"] == 9 - 3
    engine.video(1, n=4)
    body = handlers["freeze"]({})["exam"]
    assert body["zones"][2]["score"] == 1 and body["total"] == 7
    handlers["exam_stop"]({})
    for msg in engine.published:  # every published table passes the one validator
        wire.validate("exam", msg)
    assert engine.published[-1]["state"] == "stopped" and engine.published[-1]["total"] == 7


def test_blue_partial_total_and_zone_numbers() -> None:
    session = ExamSession()
    engine = FakeEngine(session)
    session.start("blue-partial", protocol="blue6")
    for number, score in ((4, 3), (6, 2)):  # R1, R3 by their 1-based numbers
        session.set_zone(number, engine.reset())
        engine.video(score)
        session.freeze()
    assert session.zone == "R3"
    assert session.totals() == (2, 5, None)
    body = session.body()
    assert body["partial_total"] == 5 and body["total"] is None and body["max_total"] == 18
    with pytest.raises(CommandError, match=r"1\.\.6"):
        session.resolve_zone(7)


def test_blue_unknown_zone_names_the_protocol_zones() -> None:
    session = ExamSession()
    session.start("blue-bad", protocol="blue6")
    for bad in ("RP1", "L4", "X1"):
        with pytest.raises(CommandError) as err:
            session.set_zone(bad)
        text = str(err.value)
        assert "blue6" in text and all(z in text for z in ("L1", "L2", "L3", "R1", "R2", "R3")), text
    handlers = ex.control_commands(session)
    with pytest.raises(CommandError, match=r"'L1', 'L2', 'L3', 'R1', 'R2', 'R3'"):
        handlers["zone"]({"zone": "LA1"})


def test_a_tied_clip_score_cannot_be_frozen_as_a_zone_score() -> None:
    """A tie (video.tie) is no decision: freeze refuses it naming the tie, and accepts once one leads."""
    from stream.aggregate import make_aggregator

    agg = make_aggregator("uninorm", [0.144, 0.212, 0.251, 0.205], temperature=0.75)  # the shipped e
    s = ExamSession()
    s.start("tie", protocol="blue6")
    s.set_zone("L1")

    def feed(probs: list[float], seq: int) -> None:
        out = agg.update(probs)
        s.observe_video({**wire.header("t", seq, seq, seq), "probs": list(out), "score": agg.score(),
                         "tie": agg.tie(), "frames": agg.count, "clip": 0})

    feed([0.0, 0.0, 1.0, 0.0], 1)
    feed([0.0, 0.0, 0.0, 1.0], 2)  # every fold now exactly 0: a four-way tie, score 0 by convention
    assert agg.tie() == [0, 1, 2, 3] and agg.score() == 0
    with pytest.raises(CommandError, match=r"tie between scores 0/1/2/3 after 2 frames"):
        s.freeze()
    assert s.table["L1"].score is None  # the zone stays unscored
    s.set_zone("L1", 1)
    agg.reset()
    for seq in range(3, 8):
        out = agg.update([0.05, 0.05, 0.8, 0.1])
        s.observe_video({**wire.header("t", seq, seq, seq), "probs": list(out), "score": agg.score(),
                         "tie": agg.tie(), "frames": agg.count, "clip": 1})
    assert s.freeze().score == 2
