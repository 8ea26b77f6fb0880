"""The recorder: messages round-trip through the file; a cut tail is dropped, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream import wire
from stream.recorder import Recorder, read_results, results_path


def _write(path: Path, n: int) -> list[tuple[str, dict, list[bytes]]]:
    written = []
    with Recorder(path, "test", meta={"source": "unit"}) as rec:
        for i in range(n):
            topic = ("frame", "video", "seg", "status")[i % 4]
            msg, payloads = wire.example(topic, seq=i)
            rec.append(topic, msg, payloads)
            written.append((topic, msg, payloads))
    return written


def test_round_trip(tmp_path: Path) -> None:
    path = results_path(tmp_path, "probe 1/a")
    assert path.name.endswith(".lusr.msgpack") and "/" not in path.name[:-1]
    written = _write(path, 12)
    res = read_results(path, validate=True)
    assert res.header["stream_id"] == "test" and res.header["meta"] == {"source": "unit"}
    assert res.truncated_bytes == 0 and res.error is None
    assert [(r.topic, r.msg, r.payloads) for r in res] == written
    assert [r.msg["seq"] for r in res.topic("frame")] == [0, 4, 8]


@pytest.mark.parametrize("cut", [1, 7, 100])
def test_truncated_tail_is_tolerated(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "r.lusr.msgpack"
    written = _write(path, 10)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    res = read_results(path)
    assert res.truncated_bytes > 0
    assert [(r.topic, r.msg, r.payloads) for r in res] == written[: len(res)]
    assert len(res) == 9  # only the last record is cut


def test_not_a_results_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.msgpack"
    bad.write_bytes(wire.pack({"hello": 1}))
    with pytest.raises(ValueError, match="not a lus-stream results file"):
        read_results(bad)


def test_append_after_reopen_keeps_both_sessions(tmp_path: Path) -> None:
    path = tmp_path / "r.lusr.msgpack"
    _write(path, 2)
    # A second recorder on the same path appends a second header; the reader keeps messages only.
    _write(path, 3)
    res = read_results(path)
    assert res.error is not None and len(res) == 5


def test_fsync_happens_in_the_background_within_the_interval(tmp_path: Path, monkeypatch) -> None:
    import os
    import threading
    import time

    import stream.recorder as recorder_mod

    calls: list[str] = []
    real = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(recorder_mod.os, "fsync", counting_fsync)
    rec = Recorder(tmp_path / "r.lusr.msgpack", "s", fsync_interval_s=0.2)
    calls.clear()
    msg, payloads = wire.example("frame")
    rec.append("frame", msg, payloads)
    assert calls == []  # the publishing thread never waits for the disk
    deadline = time.monotonic() + 2.0
    while not calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert calls and calls[0] == "recorder-fsync"
    rec.close()
    assert calls[-1] == threading.current_thread().name  # close() syncs before closing


def test_spliced_wire_bytes_write_the_same_record(tmp_path: Path) -> None:
    # the publisher hands over the map it already packed for the wire; the file must not change
    msg = wire.example("frame")
    packed = wire.pack(msg)
    paths = [tmp_path / "a.lusr.msgpack", tmp_path / "b.lusr.msgpack"]
    for path, spliced in zip(paths, (False, True), strict=True):
        with Recorder(path, "s", meta={}) as rec:
            rec.append("frame", msg, [b"\x00\x01"], packed=packed if spliced else None)
    record = wire.pack({"record": "message", "topic": "frame", "msg": msg, "payloads": [b"\x00\x01"]})
    assert paths[0].read_bytes().endswith(record) and paths[1].read_bytes().endswith(record)
    back = read_results(paths[1])
    assert len(back.records) == 1
    assert back.records[0].topic == "frame" and back.records[0].payloads == [b"\x00\x01"]
    assert back.records[0].msg == wire.unpack(packed)
