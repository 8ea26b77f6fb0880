"""The control socket: a ZeroMQ REP server with a command table.

Protocol (documented in ``docs/wire.md``): the client sends ONE msgpack map
``{"cmd": NAME, ...arguments}`` and receives ONE msgpack map ``{"v": 1, "ok": bool, "cmd": NAME,
...}``; on failure ``{"ok": false, "error": "what went wrong and how to fix it"}``. Malformed
bytes, a non-map, a missing/unknown ``cmd`` or a handler exception all produce an error reply
and the engine keeps running.

Commands are registered in a table (:meth:`ControlServer.register`) so that later features (the
exam protocol: ``exam_start``, ``zone``, ``freeze``…) add theirs without touching this module.
The engine registers ``status``, ``reset`` and ``stop``; ``help`` is built in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import zmq

from stream import wire
from stream.publisher import bind_socket, check_bind_address
from stream.security import CurveServer

DEFAULT_CTRL = "tcp://127.0.0.1:5556"
MAX_REQUEST_BYTES = 1 << 20

Handler = Callable[[dict[str, Any]], dict[str, Any] | None]
log = logging.getLogger(__name__)


class CommandError(Exception):
    """Raised by a handler to send ``{"ok": false, "error": str(err)}``."""


@dataclass
class Command:
    name: str
    handler: Handler
    help: str


class ControlServer:
    """Serves the command table on a REP socket from its own thread."""

    def __init__(
        self,
        endpoint: str = DEFAULT_CTRL,
        context: zmq.Context | None = None,
        curve: CurveServer | None = None,
        insecure: bool = False,
    ) -> None:
        self.security = check_bind_address(endpoint, "control socket", curve is not None, insecure)
        self.endpoint = endpoint
        self.commands: dict[str, Command] = {}
        self.requests = 0
        self.errors = 0
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 100)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        bind_socket(self._sock, endpoint, "control socket", curve)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.register("help", self._help, "list the commands and what they do")

    def register(self, name: str, handler: Handler, help: str) -> None:
        """Add (or replace) a command; ``handler(request) -> dict`` of extra reply fields."""
        self.commands[name] = Command(name, handler, help)

    def _help(self, _req: dict[str, Any]) -> dict[str, Any]:
        return {"commands": {c.name: c.help for c in self.commands.values()}}

    def handle(self, raw: bytes) -> dict[str, Any]:
        """One request's bytes → the reply map (never raises)."""
        self.requests += 1
        try:
            req = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except Exception as err:  # any undecodable input is the client's error, not ours
            return self._error(None, f"request is not msgpack ({err}); send a map like {{'cmd': 'status'}}")
        if not isinstance(req, dict):
            return self._error(None, f"request must be a map with a 'cmd' key, got {type(req).__name__}")
        cmd = req.get("cmd")
        if not isinstance(cmd, str):
            return self._error(None, "request has no 'cmd' string; try {'cmd': 'help'}")
        command = self.commands.get(cmd)
        if command is None:
            return self._error(cmd, f"unknown command {cmd!r}; known: {sorted(self.commands)}")
        try:
            extra = command.handler(req) or {}
        except CommandError as err:
            return self._error(cmd, str(err))
        except Exception as err:
            log.exception("control command %r failed", cmd)
            return self._error(cmd, f"command {cmd!r} failed: {type(err).__name__}: {err}")
        return {"v": wire.SCHEMA_VERSION, "ok": True, "cmd": cmd, **extra}

    def _error(self, cmd: str | None, text: str) -> dict[str, Any]:
        self.errors += 1
        return {"v": wire.SCHEMA_VERSION, "ok": False, "cmd": cmd, "error": text}

    def serve_forever(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not dict(poller.poll(100)):
                continue
            try:
                raw = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                continue
            except zmq.ZMQError as err:  # e.g. an oversized request: REP state machine is intact
                log.warning("control socket receive failed: %s", err)
                continue
            reply = self.handle(raw)
            try:
                data = wire.pack(reply)
            except (TypeError, ValueError) as err:
                data = wire.pack(self._error(reply.get("cmd"), f"reply could not be encoded: {err}"))
            try:
                self._sock.send(data)
            except zmq.ZMQError as err:
                log.warning("control reply failed: %s", err)
        self._sock.close(linger=100)

    def start(self) -> ControlServer:
        self._thread = threading.Thread(target=self.serve_forever, name="control", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def request(endpoint: str, cmd: str, timeout_ms: int = 3000, **args: Any) -> dict[str, Any]:
    """Client helper: send one command and return the reply map (raises TimeoutError)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    try:
        sock.connect(endpoint)
        sock.send(wire.pack({"cmd": cmd, **args}))
        try:
            return wire.unpack(sock.recv())
        except zmq.Again as err:
            msg = f"no reply from the engine's control socket {endpoint} within {timeout_ms} ms"
            raise TimeoutError(msg) from err
    finally:
        sock.close()
