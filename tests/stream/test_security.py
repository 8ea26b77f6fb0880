"""CURVE on real 127.0.0.1 sockets: allowed client receives, wrong key/plaintext get nothing; bind policy."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from stream import security, wire
from stream.security import CurveServer, SecurityError, check_bind, configure_client, keygen

WAIT_S = 1.5  # bounded wait for the negative cases (a refused handshake delivers nothing, ever)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> security.KeyFiles:
    return keygen(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def curve_pub(keys: security.KeyFiles):
    ctx = zmq.Context()
    server = CurveServer.from_dir(ctx, keys.server_public.parent)
    pub = ctx.socket(zmq.PUB)
    pub.linger = 0
    server.apply(pub)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    yield pub, f"tcp://127.0.0.1:{port}"
    pub.close()
    server.stop()
    ctx.term()


def _receive(pub: zmq.Socket, sub: zmq.Socket, seconds: float) -> list[bytes]:
    """Publish every 20 ms (slow joiner) and collect what the subscriber gets within ``seconds``."""
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline and not got:
        pub.send_multipart([b"status", str(i).encode()])
        i += 1
        if sub.poll(20):
            got.append(sub.recv_multipart()[1])
    return got


def _sub(ctx: zmq.Context) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    return sub


def test_keygen_layout(keys: security.KeyFiles) -> None:
    assert (keys.authorized_clients / "client.key").is_file()
    assert keys.server_secret.stat().st_mode & 0o077 == 0
    pub, sec = zmq.auth.load_certificate(keys.client_secret)
    assert len(pub) == 40 and sec is not None and len(sec) == 40
    assert security.load_public_key(keys.authorized_clients / "client.key") == pub


def test_keygen_keeps_server_and_adds_client(tmp_path: Path) -> None:
    first = keygen(tmp_path)
    second = keygen(tmp_path, client_name="ward2")
    assert security.load_public_key(first.server_public) == security.load_public_key(second.server_public)
    assert sorted(p.name for p in second.authorized_clients.glob("*.key")) == ["client.key", "ward2.key"]


def test_authorised_client_receives(curve_pub, keys: security.KeyFiles) -> None:
    pub, endpoint = curve_pub
    ctx = zmq.Context()
    sub = _sub(ctx)
    configure_client(sub, keys.client_secret, keys.server_public)
    sub.connect(endpoint)
    try:
        assert _receive(pub, sub, 10.0), "an allowed CURVE client received nothing"
    finally:
        sub.close()
        ctx.term()


def test_wrong_key_client_receives_nothing(curve_pub, keys: security.KeyFiles, tmp_path: Path) -> None:
    pub, endpoint = curve_pub
    _, stranger = zmq.auth.create_certificates(tmp_path, "stranger")  # valid keys, not in the allow-list
    ctx = zmq.Context()
    sub = _sub(ctx)
    configure_client(sub, stranger, keys.server_public)
    sub.connect(endpoint)
    try:
        assert _receive(pub, sub, WAIT_S) == []
    finally:
        sub.close()
        ctx.term()


def test_plaintext_client_receives_nothing(curve_pub) -> None:
    pub, endpoint = curve_pub
    ctx = zmq.Context()
    sub = _sub(ctx)
    sub.connect(endpoint)
    try:
        assert _receive(pub, sub, WAIT_S) == []
    finally:
        sub.close()
        ctx.term()


def test_curve_rep_socket_answers_allowed_client(keys: security.KeyFiles) -> None:
    ctx = zmq.Context()
    server = CurveServer.from_dir(ctx, keys.server_public.parent)
    rep = ctx.socket(zmq.REP)
    rep.linger = 0
    server.apply(rep)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    req = ctx.socket(zmq.REQ)
    req.linger = 0
    configure_client(req, keys.client_secret, keys.server_public)
    req.connect(f"tcp://127.0.0.1:{port}")
    try:
        req.send(b"ping")
        assert rep.poll(5000), "REP never got the CURVE client's request"
        assert rep.recv() == b"ping"
        rep.send(b"pong")
        assert req.poll(5000) and req.recv() == b"pong"
    finally:
        req.close()
        rep.close()
        server.stop()
        ctx.term()


def test_loopback_works_without_keys() -> None:
    assert check_bind("tcp://127.0.0.1:5555", curve_configured=False) == "loopback"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.linger = 0
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub = _sub(ctx)
    sub.connect(f"tcp://127.0.0.1:{port}")
    try:
        assert _receive(pub, sub, 10.0)
    finally:
        sub.close()
        pub.close()
        ctx.term()


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://[::1]:5555",
                                      "tcp://127.0.0.2:9", "ipc:///tmp/lus.sock", "inproc://x", "tcp://lo:5"])
def test_loopback_endpoints(endpoint: str) -> None:
    assert security.is_loopback(endpoint)
    assert check_bind(endpoint, curve_configured=False) == "loopback"
    assert check_bind(endpoint, curve_configured=True) == "curve"


@pytest.mark.parametrize("endpoint", ["tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://192.168.1.20:5555",
                                      "tcp://eth0:5555", "tcp://[::]:5555", "tcp://scanner.local:5555",
                                      "epgm://eth0;239.192.1.1:5555"])
def test_network_bind_needs_curve_or_insecure(endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    assert not security.is_loopback(endpoint)
    with pytest.raises(SecurityError, match="keygen"):
        check_bind(endpoint, curve_configured=False)
    assert check_bind(endpoint, curve_configured=True) == "curve"
    with caplog.at_level(logging.WARNING, logger="stream.security"):
        assert check_bind(endpoint, curve_configured=False, insecure=True) == "insecure"
    assert any("INSECURE" in r.getMessage() and endpoint in r.getMessage() for r in caplog.records)


def test_bad_key_files_name_the_fix(keys: security.KeyFiles, tmp_path: Path) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    try:
        with pytest.raises(SecurityError, match="key_secret"):
            configure_client(sock, keys.client_public, keys.server_public)  # public file given as secret
        with pytest.raises(SecurityError, match="does not exist"):
            configure_client(sock, tmp_path / "nope.key_secret", keys.server_public)
        with pytest.raises(SecurityError, match="allow-list"):
            CurveServer(ctx, keys.server_secret, tmp_path)  # empty allow-list
        with pytest.raises(SecurityError, match="no transport"):
            security.is_loopback("127.0.0.1:5555")
    finally:
        sock.close()
        ctx.term()


def test_keygen_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert security.keygen_main([str(tmp_path / "k")]) == 0
    assert (tmp_path / "k" / "server.key_secret").is_file()
    assert "--server-key" in capsys.readouterr().out


def test_engine_sockets_with_curve_on_all_interfaces(keys: security.KeyFiles) -> None:
    """The engine's Publisher and ControlServer take a CurveServer: a 0.0.0.0 bind is then allowed and
    encrypted."""
    import socket

    from stream import control as control_mod
    from stream import publisher as publisher_mod

    with socket.socket() as s, socket.socket() as s2:
        s.bind(("127.0.0.1", 0))
        s2.bind(("127.0.0.1", 0))
        port, port2 = s.getsockname()[1], s2.getsockname()[1]
    ctx = zmq.Context()
    server = CurveServer.from_dir(ctx, keys.server_public.parent)
    with pytest.raises(SecurityError):
        publisher_mod.Publisher(f"tcp://0.0.0.0:{port}", context=ctx)
    pub = publisher_mod.Publisher(f"tcp://0.0.0.0:{port}", context=ctx, curve=server)
    ctrl = control_mod.ControlServer(f"tcp://0.0.0.0:{port2}", context=ctx, curve=server).start()
    sub = _sub(ctx)
    configure_client(sub, keys.client_secret, keys.server_public)
    sub.connect(f"tcp://127.0.0.1:{port}")
    req = ctx.socket(zmq.REQ)
    req.linger = 0
    configure_client(req, keys.client_secret, keys.server_public)
    req.connect(f"tcp://127.0.0.1:{port2}")
    try:
        assert pub.security == "curve" and ctrl.security == "curve"
        got = False
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            pub.publish("status", wire.example("status")[0])
            got = bool(sub.poll(20))
        assert got
        req.send(msgpack_pack({"cmd": "help"}))
        assert req.poll(5000)
        assert b"commands" in req.recv()
    finally:
        sub.close()
        req.close()
        ctrl.close()
        pub.close()
        server.stop()
        ctx.term()


def msgpack_pack(obj: dict) -> bytes:
    import msgpack

    return msgpack.packb(obj)
