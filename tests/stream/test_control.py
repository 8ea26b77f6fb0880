"""The control socket: commands from a table, error replies for anything malformed, server survives."""

from __future__ import annotations

import socket

import msgpack
import pytest
import zmq

from stream import wire
from stream.control import CommandError, ControlServer, request
from stream.publisher import BindRefused


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    srv = ControlServer(endpoint)
    state = {"resets": 0}

    def reset(req):
        state["resets"] += 1
        return {"clip": state["resets"]}

    def fail(req):
        raise CommandError("zone must be one of R1..R7, L1..L7")

    def crash(req):
        raise ZeroDivisionError("boom")

    srv.register("reset", reset, "reset the clip aggregate")
    srv.register("zone", fail, "set the zone")
    srv.register("crash", crash, "always fails")
    srv.start()
    yield endpoint, state
    srv.close()


def _raw(endpoint: str, data: bytes) -> dict:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.connect(endpoint)
    sock.send(data)
    try:
        return msgpack.unpackb(sock.recv(), raw=False)
    finally:
        sock.close()


def test_commands_and_help(server) -> None:
    endpoint, state = server
    assert request(endpoint, "reset") == {"v": wire.SCHEMA_VERSION, "ok": True, "cmd": "reset", "clip": 1}
    assert request(endpoint, "reset")["clip"] == 2 and state["resets"] == 2
    helped = request(endpoint, "help")
    assert helped["ok"] and set(helped["commands"]) == {"help", "reset", "zone", "crash"}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xc1garbage", "not msgpack"),
        (msgpack.packb([1, 2]), "must be a map"),
        (msgpack.packb({"command": "reset"}), "no 'cmd' string"),
        (msgpack.packb({"cmd": 5}), "no 'cmd' string"),
        (msgpack.packb({"cmd": "explode"}), "unknown command 'explode'"),
        (msgpack.packb({"cmd": "zone", "zone": "X9"}), "zone must be one of"),
        (msgpack.packb({"cmd": "crash"}), "ZeroDivisionError: boom"),
        (msgpack.packb({1: 2}), "not msgpack"),  # non-string keys are refused by the decoder
    ],
)
def test_malformed_requests_get_error_replies_and_server_survives(server, data: bytes, needle: str) -> None:
    endpoint, _state = server
    reply = _raw(endpoint, data)
    assert reply["ok"] is False and needle in reply["error"]
    assert request(endpoint, "reset")["ok"]  # still serving


def test_non_loopback_control_is_refused() -> None:
    with pytest.raises(BindRefused):
        ControlServer("tcp://0.0.0.0:5556")


def test_request_times_out_without_server() -> None:
    with pytest.raises(TimeoutError, match="no reply"):
        request(f"tcp://127.0.0.1:{free_port()}", "status", timeout_ms=200)
