"""Transport security for the engine's sockets: ZeroMQ CURVE keys, the client allow-list, the bind policy.

Frames and results are patient data. The rule (docs/security.md; the sockets: docs/wire.md "Transport"):

* a PUB or REP socket bound to a loopback endpoint (``tcp://127.*``, ``tcp://localhost``, ``tcp://[::1]``,
  ``ipc://``, ``inproc://``) may run in the clear;
* any other bind (``tcp://*``, ``tcp://0.0.0.0``, a LAN address, an interface name) needs CURVE: the engine
  loads its secret key and an allow-list of client public keys (a directory of ``*.key`` files, checked by
  pyzmq's :class:`~zmq.auth.thread.ThreadAuthenticator`), and every client needs its own key pair plus the
  server's public key;
* ``--insecure`` is the only way to bind in the clear off loopback; :func:`check_bind` logs it loudly and
  returns the mode ``"insecure"`` so that the engine can report it in every ``status`` message.

Key layout written by :func:`keygen` (``lus-stream keygen DIR``)::

    DIR/server.key            server public key   (give to every viewer: --server-key)
    DIR/server.key_secret     server secret key   (stays on the engine host, mode 0600)
    DIR/client.key            client public key
    DIR/client.key_secret     client secret key   (give to the viewer: --client-key, mode 0600)
    DIR/authorized_clients/   allow-list: one public ``*.key`` per client (client.key copied here)

CURVE also works on loopback endpoints; the policy only *requires* it off loopback.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)

BindMode = Literal["loopback", "curve", "insecure"]

SERVER_NAME = "server"
CLIENT_NAME = "client"
ALLOW_DIR = "authorized_clients"


class SecurityError(RuntimeError):
    """A bind the policy refuses, or key files that are missing or malformed (the message names the fix)."""


@dataclass(frozen=True)
class KeyFiles:
    """Paths written by :func:`keygen`."""

    server_public: Path
    server_secret: Path
    client_public: Path
    client_secret: Path
    authorized_clients: Path


def keygen(directory: str | os.PathLike, client_name: str = CLIENT_NAME, overwrite: bool = False) -> KeyFiles:
    """Write a server and a client CURVE key pair into ``directory`` and allow the client.

    An existing server key pair is kept (so that already-deployed viewers keep working) unless ``overwrite``;
    a further call with another ``client_name`` adds one more allowed client.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    allow = root / ALLOW_DIR
    allow.mkdir(exist_ok=True)
    server_pub, server_sec = root / f"{SERVER_NAME}.key", root / f"{SERVER_NAME}.key_secret"
    old_umask = os.umask(0o077)  # secret keys are never readable by others, not even for a moment
    try:
        if overwrite or not (server_pub.is_file() and server_sec.is_file()):
            zmq.auth.create_certificates(root, SERVER_NAME)
        client_pub, client_sec = (Path(p) for p in zmq.auth.create_certificates(root, client_name))
    finally:
        os.umask(old_umask)
    for secret in (server_sec, client_sec):
        secret.chmod(0o600)
    for public in (server_pub, client_pub):
        public.chmod(0o644)
    shutil.copyfile(client_pub, allow / client_pub.name)
    return KeyFiles(server_pub, server_sec, client_pub, client_sec, allow)


def _load(path: str | os.PathLike, need_secret: bool) -> tuple[bytes, bytes | None]:
    path = Path(path)
    if not path.is_file():
        raise SecurityError(f"CURVE key file {path} does not exist: create keys with `lus-stream keygen DIR`")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise SecurityError(f"CURVE key file {path} is not a ZeroMQ certificate ({exc}): "
                            "regenerate it with `lus-stream keygen DIR`") from exc
    if need_secret and not secret:
        raise SecurityError(f"{path} holds no secret key: pass the *.key_secret file, not the public *.key")
    return public, secret


def load_public_key(path: str | os.PathLike) -> bytes:
    """The public key from a ``*.key`` (or ``*.key_secret``) certificate file."""
    return _load(path, need_secret=False)[0]


class CurveServer:
    """CURVE for the engine's sockets: one authenticator per context, allow-list from a key directory.

    ``CurveServer(ctx, "keys/server.key_secret", "keys/authorized_clients")``, then :meth:`apply` on each
    socket *before* it binds, and :meth:`stop` at shutdown. Clients whose public key is not in the
    allow-list are refused by the ZAP handshake and receive nothing.
    """

    def __init__(self, context: zmq.Context, server_secret: str | os.PathLike,
                 authorized_clients: str | os.PathLike) -> None:
        self.public, secret = _load(server_secret, need_secret=True)
        assert secret is not None
        self._secret = secret
        allow = Path(authorized_clients)
        if not allow.is_dir() or not any(allow.glob("*.key")):
            raise SecurityError(f"client allow-list {allow} has no *.key files: run `lus-stream keygen DIR` "
                                f"or copy each viewer's public key there")
        self.authorized_clients = allow
        self._auth = ThreadAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(allow))

    @classmethod
    def from_dir(cls, context: zmq.Context, keys_dir: str | os.PathLike) -> CurveServer:
        """Use the layout written by :func:`keygen`."""
        root = Path(keys_dir)
        return cls(context, root / f"{SERVER_NAME}.key_secret", root / ALLOW_DIR)

    def apply(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a CURVE server (call before ``bind``)."""
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self.public
        socket.curve_server = True

    def reload(self) -> None:
        """Re-read the allow-list directory (after adding or removing a client key)."""
        self._auth.configure_curve(domain="*", location=str(self.authorized_clients))

    def stop(self) -> None:
        self._auth.stop()


def configure_client(socket: zmq.Socket, client_secret: str | os.PathLike,
                     server_public: str | os.PathLike) -> None:
    """Make ``socket`` a CURVE client with its key pair and the server's public key (call before connect)."""
    public, secret = _load(client_secret, need_secret=True)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = load_public_key(server_public)


def is_loopback(endpoint: str) -> bool:
    """True when ``endpoint`` can only be reached from this host (tcp loopback, ipc, inproc)."""
    transport, sep, rest = endpoint.partition("://")
    if not sep:
        raise SecurityError(f"endpoint {endpoint!r} has no transport: write it like tcp://127.0.0.1:5555")
    transport = transport.lower()
    if transport in ("ipc", "inproc"):
        return True
    if transport not in ("tcp", "ws", "wss"):
        return False  # pgm/epgm/udp/...: multicast or network transports are never loopback
    host = rest.split("/", 1)[0]
    if host.startswith("["):  # [::1]:5555
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if ";" in host:  # tcp://src;dst form
        host = host.split(";")[-1]
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", interface names, host names: reachable from elsewhere


def check_bind(endpoint: str, curve_configured: bool, insecure: bool = False) -> BindMode:
    """How ``endpoint`` may be bound: ``"curve"``, ``"loopback"`` (clear, local only) or ``"insecure"``.

    Raises :class:`SecurityError` for a non-loopback bind without CURVE unless ``insecure`` is set, which
    is logged as a warning banner (the engine must also report the mode in every ``status``).
    """
    if curve_configured:
        return "curve"
    if is_loopback(endpoint):
        return "loopback"
    if not insecure:
        raise SecurityError(
            f"refusing to bind {endpoint} in the clear: frames and results are patient data. "
            f"Create keys with `lus-stream keygen DIR` and start the engine with them, bind to 127.0.0.1, "
            f"or pass --insecure on a network you trust")
    log.warning("*" * 78)
    log.warning("INSECURE: %s is bound WITHOUT encryption or authentication (--insecure).", endpoint)
    log.warning("Anyone on the network can read the frames and results. Use CURVE keys for patient data.")
    log.warning("*" * 78)
    return "insecure"


def keygen_main(argv: list[str] | None = None) -> int:
    """``lus-stream keygen DIR [--client NAME] [--overwrite]``."""
    parser = argparse.ArgumentParser(prog="lus-stream keygen",
                                     description="Write CURVE key pairs and the client allow-list.")
    parser.add_argument("dir", help="key directory (created if missing)")
    parser.add_argument("--client", default=CLIENT_NAME,
                        help="name of the client key pair to add (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing server key pair (viewers then need the new server.key)")
    args = parser.parse_args(argv)
    files = keygen(args.dir, args.client, args.overwrite)
    print(f"server: {files.server_secret} (keep on the engine host), public {files.server_public}")
    print(f"client: {files.client_secret} + {files.server_public} go to the viewer "
          f"(lus-view --client-key {files.client_secret} --server-key {files.server_public})")
    print(f"allow-list: {files.authorized_clients}")
    return 0
