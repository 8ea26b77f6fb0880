"""The results recorder: every published message appended to a per-exam file, nothing lost.

File format (documented in ``docs/wire.md``): a plain concatenation of msgpack maps, no framing
beyond msgpack's own. The first map is a header::

    {"record": "header", "format": "lus-stream-results", "format_version": 1,
     "schema_version": <wire v>, "stream_id": str, "created_unix_s": float, "meta": {...}}

and every following map is one published message, exactly as it went on the wire::

    {"record": "message", "topic": str, "msg": {...wire map...}, "payloads": [bin, ...]}

Durability: each record is written with one ``write`` and flushed to the OS immediately (so a
``kill -9`` of the engine loses nothing that was published), and ``fsync``'d by a background
thread at least once per second while there is unsynced data (never in the publishing thread, so
a slow disk cannot add latency) and at every :meth:`Recorder.sync` (reset, exam change, stop), so
a power cut loses at most the last second. :func:`read_results` loads a file back and tolerates a
truncated tail (a record cut in half by a kill).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from stream import wire

FORMAT = "lus-stream-results"
FORMAT_VERSION = 1
SUFFIX = ".lusr.msgpack"

log = logging.getLogger(__name__)


def results_path(directory: str | Path, stream_id: str, label: str | None = None) -> Path:
    """A fresh file name in ``directory``: ``<UTC time>_<stream_id>[_<label>].lusr.msgpack``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in stream_id)
    name = f"{stamp}_{safe}" + (f"_{label}" if label else "")
    return Path(directory) / f"{name}{SUFFIX}"


class Recorder:
    """Appends published messages to one results file (thread-safe)."""

    def __init__(
        self,
        path: str | Path,
        stream_id: str,
        meta: dict[str, Any] | None = None,
        fsync_interval_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync_interval_s = float(fsync_interval_s)
        self.records = 0
        self._lock = threading.Lock()
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the recorder's lifetime
        self._last_sync = time.monotonic()
        self._dirty = False
        self._closing = threading.Event()
        self._write(
            {
                "record": "header",
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "schema_version": wire.SCHEMA_VERSION,
                "stream_id": stream_id,
                "created_unix_s": time.time(),
                "meta": meta or {},
            }
        )
        self.sync()
        self._syncer = threading.Thread(target=self._sync_loop, name="recorder-fsync", daemon=True)
        self._syncer.start()

    def _write(self, obj: dict[str, Any]) -> None:
        self._write_bytes(wire.pack(obj))

    def _write_bytes(self, data: bytes) -> None:
        with self._lock:
            if self._file.closed:
                raise ValueError(f"recorder {self.path} is closed")
            self._file.write(data)
            self._file.flush()
            self._dirty = True

    def _sync_loop(self) -> None:
        """fsync in the background (never in the publishing thread): at most ``fsync_interval_s`` apart."""
        while not self._closing.wait(self.fsync_interval_s / 2):
            if self._dirty and time.monotonic() - self._last_sync >= self.fsync_interval_s / 2:
                with contextlib.suppress(OSError, ValueError):  # closed under us: close() syncs
                    self._dirty = False
                    os.fsync(self._file.fileno())
                    self._last_sync = time.monotonic()

    def append(
        self, topic: str, msg: dict[str, Any], payloads: Sequence[bytes] = (), packed: bytes | None = None
    ) -> None:
        """Write one published message (flushed now, fsync'd within ``fsync_interval_s``).

        ``packed``: the map's msgpack bytes as already sent on the wire (``wire.pack(msg)``). They are
        spliced into the record instead of packing the map a second time on the publishing path; the
        record's bytes are the same either way.
        """
        blobs = [bytes(p) for p in payloads]
        if packed is None:
            self._write({"record": "message", "topic": topic, "msg": msg, "payloads": blobs})
        else:
            head = wire.pack({"record": "message", "topic": topic})  # a 2-entry map: widen to 4
            self._write_bytes(b"\x84" + head[1:] + wire.pack("msg") + packed + wire.pack("payloads")
                              + wire.pack(blobs))
        self.records += 1

    def sync(self) -> None:
        """Flush and fsync now (at reset, exam changes and stop)."""
        with self._lock:
            if self._file.closed:
                return
            self._file.flush()
            os.fsync(self._file.fileno())
            self._last_sync, self._dirty = time.monotonic(), False

    def close(self) -> None:
        self._closing.set()
        self._syncer.join(timeout=5.0)
        self.sync()
        with self._lock:
            self._file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Record:
    """One recorded message."""

    topic: str
    msg: dict[str, Any]
    payloads: list[bytes]


@dataclass
class Results:
    """A results file read back: its header, the messages in order, and whether the tail was cut."""

    path: Path
    header: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    truncated_bytes: int = 0
    error: str | None = None

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def topic(self, name: str) -> list[Record]:
        """The records of one topic, in file order."""
        return [r for r in self.records if r.topic == name]


def read_results(path: str | Path, validate: bool = False) -> Results:
    """Load a results file; a truncated or corrupt tail is dropped and reported, not raised.

    With ``validate``, every message is checked with :func:`stream.wire.validate` and a bad one
    raises :class:`stream.wire.WireError` naming its position.
    """
    path = Path(path)
    data = path.read_bytes()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max(len(data), 1 << 20))
    unpacker.feed(data)
    objs: list[Any] = []
    error: str | None = None
    consumed = 0
    try:
        for obj in unpacker:
            objs.append(obj)
            consumed = unpacker.tell()
    except (ValueError, msgpack.UnpackException) as err:
        error = f"corrupt data at byte {consumed}: {err}"
    if not objs or not isinstance(objs[0], dict) or objs[0].get("format") != FORMAT:
        raise ValueError(f"{path} is not a lus-stream results file (no '{FORMAT}' header)")
    header = objs[0]
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        version = header["format_version"]
        raise ValueError(f"{path} has results format v{version}: upgrade lus-stream to read it")
    records: list[Record] = []
    for i, obj in enumerate(objs[1:], start=1):
        if not isinstance(obj, dict) or obj.get("record") != "message":
            error = error or f"record {i} is not a message map"
            continue
        rec = Record(str(obj["topic"]), obj["msg"], list(obj.get("payloads") or []))
        if validate:
            try:
                wire.validate(rec.topic, rec.msg, rec.payloads)
            except wire.WireError as err:
                raise wire.WireError(f"{path} record {i}: {err}") from err
        records.append(rec)
    truncated = len(data) - consumed
    if truncated:
        log.warning("%s: dropped a truncated tail of %d bytes", path, truncated)
    return Results(path, header, records, truncated, error)
