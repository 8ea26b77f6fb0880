"""The publisher: loopback-only binding, messages arrive validated, a stalled subscriber never blocks."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import zmq

from stream import wire
from stream.publisher import BindRefused, Publisher, check_bind_address
from stream.recorder import Recorder, read_results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://192.168.1.20:5555",
                                      "tcp://example.org:5555", "udp://127.0.0.1:5555"])
def test_non_loopback_bind_is_refused(endpoint: str) -> None:
    with pytest.raises(BindRefused, match=r"refusing to bind|only tcp"):
        Publisher(endpoint)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:1", "tcp://127.3.2.1:9", "tcp://localhost:1",
                                      "tcp://[::1]:5", "ipc:///tmp/x", "inproc://x"])
def test_loopback_is_allowed(endpoint: str) -> None:
    check_bind_address(endpoint)


def _sub(endpoint: str, ctx: zmq.Context) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    return sub


def test_publish_arrives_in_order_and_is_recorded(tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    rec = Recorder(tmp_path / "r.lusr.msgpack", "s1")
    pub = Publisher(endpoint, stream_id="s1", recorder=rec, context=ctx)
    sub = _sub(endpoint, ctx)
    time.sleep(0.3)  # slow joiner
    sent = []
    for i in range(50):
        topic = ("frame", "seg")[i % 2]
        msg, payloads = wire.example(topic, seq=i)
        msg["t_publish_ns"] = 0
        t_pub = pub.publish(topic, msg, payloads)
        assert t_pub >= msg["t_capture_ns"]
        sent.append((topic, msg["seq"], payloads))
    got = []
    while len(got) < 50 and sub.poll(2000):
        topic, msg, payloads = wire.decode(sub.recv_multipart())
        got.append((topic, msg["seq"], payloads))
    pub.close()
    rec.close()
    sub.close()
    ctx.term()
    assert got == sent
    recorded = read_results(tmp_path / "r.lusr.msgpack", validate=True)
    assert [(r.topic, r.msg["seq"], r.payloads) for r in recorded] == sent


def test_invalid_message_is_not_sent() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint)
    msg, _ = wire.example("frame")
    msg["score"] = 9
    with pytest.raises(wire.WireError, match=r"frame\.score"):
        pub.publish("frame", msg)
    assert pub.sent == {}
    pub.close()


def test_stalled_subscriber_never_blocks_publish() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    pub = Publisher(endpoint, context=ctx, sndhwm=8)
    stalled = _sub(endpoint, ctx)
    stalled.setsockopt(zmq.RCVHWM, 8)
    stalled.setsockopt(zmq.RCVBUF, 4096)
    time.sleep(0.3)
    msg, payloads = wire.example("image")
    big = [payloads[0] + b"\0" * 200_000]  # 200 kB each: kernel and ZMQ queues fill within a few messages
    for i in range(400):
        msg["seq"] = i
        pub.publish("image", msg, big)
    assert pub.sent["image"] + pub.dropped == 400  # every call returned: none blocked
    pub.close()
    stalled.close()
    ctx.term()


def test_sampled_validation_checks_the_first_and_then_one_in_a_hundred(monkeypatch) -> None:
    """Production engines validate a sample: the first message of each topic, then every 100th. A bad
    message in the sample raises naming the field; outside it, it is sent unchecked (the cost saved)."""
    from stream.publisher import SAMPLE_EVERY, validation_mode

    monkeypatch.delenv("LUS_WIRE_VALIDATE", raising=False)
    assert validation_mode(True) == "all" and validation_mode(False) == "off"
    with pytest.raises(ValueError, match="use one of"):
        validation_mode("sometimes")
    ctx = zmq.Context()
    pub = Publisher(f"tcp://127.0.0.1:{free_port()}", context=ctx, validate="sample")
    try:
        good, _ = wire.example("video")
        bad = good | {"score": 7}
        with pytest.raises(wire.WireError, match=r"video\.score"):
            pub.publish("video", dict(bad))  # the first video message is checked
        for i in range(2 * SAMPLE_EVERY):
            pub.publish("video", dict(bad if i == 5 else good, seq=i))  # message 5 is not in the sample
        # checked: the refused first one, then messages 0 and 100; the refused one was never sent
        assert pub.validated["video"] == 3 and pub.sent["video"] == 2 * SAMPLE_EVERY
        frame, _ = wire.example("frame")
        pub.publish("frame", frame)
        assert pub.validated["frame"] == 1  # sampling counts per topic
    finally:
        pub.close()
        ctx.term()
    monkeypatch.setenv("LUS_WIRE_VALIDATE", "all")
    assert validation_mode("sample") == "all" and validation_mode("off") == "all"
