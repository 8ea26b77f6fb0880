"""lus-view on a real PUB socket: bad messages become banners (never a crash), link states, CLI outputs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import msgpack
import numpy as np
import pytest
import zmq

from stream import wire
from stream.security import CurveServer, keygen
from stream.view import overlay, sample
from stream.view.subscriber import StreamView

REPO = Path(__file__).resolve().parents[2]


def _good_frame(seq: int) -> list[bytes]:
    boxes = [sample.square(100, 100, 50), sample.square(100, 100, 80)]
    msg = sample.frame_message(seq, 1, sample.one_hot_probs(1), boxes, (0, 0, 320, 240), (240, 320),
                               time.monotonic_ns())
    return wire.encode("frame", msg)


def _bad_messages() -> list[tuple[str, list[bytes]]]:
    t = time.monotonic_ns()
    future = sample.frame_message(1, 1, sample.one_hot_probs(1), None, (0, 0, 10, 10), (10, 10), t)
    future["v"] = wire.SCHEMA_VERSION + 1
    missing = sample.frame_message(2, 1, sample.one_hot_probs(1), None, (0, 0, 10, 10), (10, 10), t)
    del missing["probs"]
    _, seg, seg_payloads = sample.seg_message(3, np.full((8, 8), 4, np.uint8), (0, 0, 8, 8), (8, 8), t)
    exam = sample.demo_exam([1, 2] + [None] * 12)
    exam["partial_total"] = 40
    return [
        ("not msgpack", [b"frame", b"\xc1\xc1\xc1"]),
        ("truncated: topic only", [b"frame"]),
        ("newer schema", [b"frame", msgpack.packb(future)]),
        ("missing field", [b"frame", msgpack.packb(missing)]),
        ("unknown topic", [b"weird", msgpack.packb(future)]),
        ("payload missing", [b"seg", msgpack.packb(seg)]),
        ("non-string keys", [b"status", msgpack.packb({1: 2})]),
        ("too many parts", [b"frame", msgpack.packb(missing)] + [b"x"] * 10),
        ("inconsistent exam", [b"exam", msgpack.packb(exam)]),
        ("not a map", [b"video", msgpack.packb([1, 2, 3])]),
        ("bad png payload", [b"seg", msgpack.packb(seg), b"garbage", *seg_payloads[1:]]),
    ]


@pytest.fixture
def pub():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}", ctx
    sock.close()
    ctx.term()


def _until(view: StreamView, pred, pub_sock=None, parts=None, seconds: float = 8.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pub_sock is not None and parts is not None:
            pub_sock.send_multipart(parts)
        time.sleep(0.02)
        view.poll()
        if pred():
            return True
    return False


def test_viewer_survives_bad_messages(pub) -> None:
    sock, endpoint, ctx = pub
    view = StreamView(endpoint, ctx)
    try:
        assert _until(view, lambda: "frame" in view.latest, sock, _good_frame(0)), "no message arrived"
        bad = _bad_messages()
        for _, parts in bad:
            sock.send_multipart(parts)
        sock.send_multipart(_good_frame(777))
        assert _until(view, lambda: view.latest["frame"].msg["seq"] == 777)
        decode_errors = view.n_errors
        assert decode_errors == len(bad) - 1  # the bad PNG validates; it fails only when drawn
        assert view.seg_layer() is None  # ... and is then reported and dropped, not raised
        assert view.n_errors == len(bad)
        texts = " | ".join(text for _, text in view.errors)
        assert "upgrade" in texts and "newer" in texts and "probs" in texts and "payload" in texts
        scene = view.scene()
        assert scene.frame["seq"] == 777
        assert any(b.kind == "error" for b in scene.banners)
        out = overlay.render(None, scene, blank_hw=(240, 320))
        assert out.shape[0] == 240 and tuple(out[5, 5]) == overlay.BANNER_COLOURS["error"]
    finally:
        view.close()


def test_stale_and_disconnected(pub) -> None:
    sock, endpoint, ctx = pub
    view = StreamView(endpoint, ctx, stale_s=1.0, disconnect_s=3.0)
    try:
        assert view.link_state() == "waiting"
        status = wire.encode("status", sample.status_message(1, time.monotonic_ns()))
        assert _until(view, lambda: "status" in view.latest, sock, status)
        now = time.monotonic()
        assert view.link_state(now) == "live"
        assert view.link_state(now + 1.5) == "stale"
        assert any("STALE" in b.text for b in view.scene(now=now + 1.5).banners)
        assert view.link_state(now + 3.5) == "disconnected"
        # the engine says it stopped
        stopped = wire.encode("status", sample.status_message(2, time.monotonic_ns(), state="stopped"))
        sock.send_multipart(stopped)
        assert _until(view, lambda: view.latest["status"].msg["seq"] == 2)
        assert view.link_state() == "disconnected"
        # the engine's socket goes away: the monitor reports it at once
        view.latest.pop("status")
        sock.close()
        assert _until(view, lambda: view.connected is False, seconds=5.0)
        assert view.link_state() == "disconnected"
        assert any("DISCONNECTED" in b.text for b in view.scene().banners)
    finally:
        view.close()


def test_viewer_with_curve_keys(tmp_path: Path) -> None:
    keys = keygen(tmp_path)
    ctx = zmq.Context()
    server = CurveServer.from_dir(ctx, tmp_path)
    sock = ctx.socket(zmq.PUB)
    sock.linger = 0
    server.apply(sock)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    view = StreamView(f"tcp://127.0.0.1:{port}", ctx, str(keys.client_secret), str(keys.server_public))
    try:
        assert _until(view, lambda: "frame" in view.latest, sock, _good_frame(3))
    finally:
        view.close()
        sock.close()
        server.stop()
        ctx.term()


def test_cli_prints_records_and_snapshots(pub, tmp_path: Path) -> None:
    sock, endpoint, _ = pub
    import synth

    sim = synth.LiveSimulator(seed=5, schedule=[(0, 3)])
    out, snaps = tmp_path / "overlay.mp4", tmp_path / "snaps"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.view.cli", "--connect", endpoint, "--print", "--window", "no",
         "--out", str(out), "--snapshot-every", "5", str(snaps), "--duration", "5", "--uncertainty"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 4.5
        seq = 0
        bad = _bad_messages()
        while time.monotonic() < deadline and proc.poll() is None:
            image, score, mask = sim.next()
            for topic, msg, payloads in sample.demo_scene_messages(image, mask, score, seq=seq,
                                                                    with_uncertainty=seq % 10 == 0):
                sock.send_multipart(wire.encode(topic, msg, payloads))
            sock.send_multipart(bad[seq % len(bad)][1])
            seq += 1
            time.sleep(1 / 30)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    lines = stdout.splitlines()
    assert any(line.startswith("frame  seq=") and "score=3" in line for line in lines), stdout[:500]
    assert any(line.startswith("status") for line in lines) and any(line.startswith("seg") for line in lines)
    assert any(line.startswith("ERROR") for line in lines)
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) >= 10 and frames[0].shape[0] == 540
    pngs = sorted(snaps.glob("overlay_*.png"))
    assert pngs and len(pngs) >= len(frames) // 5 - 1


def test_cli_local_frames_and_two_streams_without_engines(tmp_path: Path) -> None:
    """--frames-from synthetic pictures, two --connect views tiled, no engine running: 'waiting' banners."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    snaps = tmp_path / "snaps"
    proc = subprocess.run(
        [sys.executable, "-m", "stream.view.cli", "--connect", "tcp://127.0.0.1:1", "--connect",
         "tcp://127.0.0.1:2", "--frames-from", "synthetic:4", "--window", "no", "--snapshot-every", "3",
         str(snaps), "--duration", "2", "--min-height", "240"],
        capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import cv2

    pngs = sorted(snaps.glob("*.png"))
    assert pngs
    img = cv2.imread(str(pngs[-1]))
    assert img.shape[0] == 480 and img.shape[1] == 2 * (640 + overlay.PANEL_W)  # two views side by side
    assert tuple(img[5, 5]) == overlay.BANNER_COLOURS["info"]  # "waiting for the engine"
    assert img[200:300, 200:400].std() > 5  # a simulated picture under it, not black


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.timeout(120)
def test_killed_engine_shows_last_known_source_state(tmp_path: Path) -> None:
    """A real engine (``python -m stream.cli --synthetic``) is SIGKILLed while a viewer watches: the
    DISCONNECTED banner comes at once (socket monitor), and the panel no longer says "source running" as
    if live: it shows the last known state, dim, with its age — in the viewer's scene and in the overlays
    the ``lus-view`` process rendered."""
    import cv2

    pub, ctrl = _free_endpoint(), _free_endpoint()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with open(tmp_path / "engine.log", "w") as log:  # a file: the killed engine's children may outlive it
        engine = subprocess.Popen([sys.executable, "-m", "stream.cli", "--synthetic", "--pub", pub, "--ctrl",
                                   ctrl, "--threads", "1", "--seg-every", "8"], cwd=REPO, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    snaps = tmp_path / "snaps"
    viewer = subprocess.Popen([sys.executable, "-m", "stream.view.cli", "--connect", pub, "--window", "no",
                               "--snapshot-every", "2", str(snaps), "--max-fps", "10", "--min-height", "480",
                               "--duration", "60"], env=env, stderr=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    view = StreamView(pub, ctx)
    try:
        running = lambda: ("status" in view.latest  # noqa: E731
                           and view.latest["status"].msg["source"]["state"] == "running")
        assert _until(view, running, seconds=45), (tmp_path / "engine.log").read_text()[-2000:]
        live = view.scene()
        assert live.link == "live"
        assert any(t.startswith("source running  link") for t, _ in overlay.status_lines(live))
        time.sleep(0.5)  # the viewer process draws the live state too
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
        t_kill = time.monotonic()
        assert _until(view, lambda: view.link_state() == "disconnected", seconds=5)
        assert time.monotonic() - t_kill < 2.0  # the monitor saw the peer go, no 3 s status timeout
        time.sleep(1.5)
        scene = view.scene()
        lines = overlay.status_lines(scene)
        text = " ".join(t for t, _ in lines)
        assert "source running (last known" in text and "s ago)" in text, text
        assert not any(t.startswith("source running  link") for t, _ in lines)
        assert all(colour == overlay.DIM for t, colour in lines if not t.startswith("view "))
        assert scene.status_age_s is not None and scene.status_age_s >= 1.5
        assert any(b.kind == "disconnected" for b in scene.banners)
        viewer.send_signal(signal.SIGTERM)
        _, stderr = viewer.communicate(timeout=20)
        assert viewer.returncode == 0, stderr[-2000:]
    finally:
        view.close()
        ctx.term()
        for proc in (engine, viewer):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # the last overlay the lus-view process wrote: DISCONNECTED across the top, the engine lines dim
    last = cv2.imread(str(sorted(snaps.glob("overlay_*.png"))[-1]))
    assert tuple(last[5, 5]) == overlay.BANNER_COLOURS["disconnected"]
    assert tuple(last[5, -3]) == overlay.BANNER_COLOURS["disconnected"]  # across the panel too
    panel = last[:, -overlay.PANEL_W:]
    top = int(np.argmax(np.all(panel[:, -3] == 28, axis=1)))  # first row below the banners
    first = 4 + 20 + 2 * (22 + 4 * 16 + 6)  # below the title and the two bar blocks
    region = panel[top + first: last.shape[0] - 24]
    assert (region > 28 + 20).any()  # the engine lines are there ...
    bright_rows = np.nonzero((region >= overlay.GREY[0] - 5).any(axis=(1, 2)))[0]
    # ... dim; only the viewer's own "view N fps" line (the last one) is drawn in the live grey
    assert bright_rows.size == 0 or bright_rows.max() - bright_rows.min() < 18, bright_rows
