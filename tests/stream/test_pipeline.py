"""The engine end to end, as a real process with real sockets: clips arrive complete and in order,
messages validate, latencies are sane, afap is lossless, a stalled subscriber costs nothing, the
control socket survives garbage, kill -9 loses at most a second, SIGTERM exits cleanly, a truncated
clip exits non-zero after recording what decoded, and every real clip streams."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from stream import wire
from stream.control import request
from stream.recorder import read_results

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="the tiny test models are exported with torch")
    from engines import build_manifest, testing, write_manifest

    root = tmp_path_factory.mktemp("models")
    testing.make_tiny_onnx(root / "frame", "frame", size_hw=(32, 32), torch_export=False)
    testing.make_tiny_onnx(root / "seg", "seg", size_hw=(26, 20), torch_export=False)
    agg = build_manifest(
        name="tiny-aggregator", version="0.0.1", task="aggregator", format="none", file=None,
        inputs=[], outputs=[], class_names=["0", "1", "2", "3"], training=dict(testing.TRAINING_STUB),
        parameters={"neutral_elements": [0.3, 0.4, 0.5, 0.6], "sord_gap": 0.5},
    )
    write_manifest(agg, root / "frame" / "tiny-aggregator.json")
    return root


def write_clip(path: Path, n: int, fps: float = 30.0, hw=(80, 96), fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (hw[1], hw[0]), isColor=False)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, hw, dtype=np.uint8)
        cv2.putText(img, str(i), (5, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 2)
        writer.write(img)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip30(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "clip30.mp4", 45)


class Engine:
    """``python -m stream.cli`` on free loopback ports; output to files (a killed engine's capture
    child must not hold our pipes open)."""

    counter = 0

    def __init__(self, models: Path, *args: str, logs: Path | None = None) -> None:
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.ctrl = f"tcp://127.0.0.1:{free_port()}"
        cmd = [sys.executable, "-m", "stream.cli", *args, "--engines", str(models),
               "--pub", self.pub, "--ctrl", self.ctrl]
        Engine.counter += 1
        self.log = Path(logs or models) / f"engine-{os.getpid()}-{Engine.counter}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)

    @property
    def err(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def control(self, cmd: str, **kw) -> dict:
        return request(self.ctrl, cmd, timeout_ms=5000, **kw)

    def wait_ready(self, timeout: float = 30.0) -> dict:
        """Until the control socket answers a status whose source is running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                st = self.control("status")["status"]
                if st["frames_scored"] > 0:
                    return st
            except TimeoutError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"engine did not start: {self.proc.poll()}")


def subscribe(endpoint: str, ctx: zmq.Context) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    return sub


def collect(sub: zmq.Socket, until, timeout: float = 60.0) -> list[tuple[str, dict, list[bytes]]]:
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sub.poll(200):
            got.append(wire.decode(sub.recv_multipart()))  # validates every message
        elif until(got):
            break
    return got


def test_paced_clip_complete_in_order_sane_latency(models: Path, clip30: Path, tmp_path: Path) -> None:
    ctx = zmq.Context()
    eng = Engine(models, "--clip", str(clip30), "--record", str(tmp_path), "--mc-samples", "3",
                 "--mc-every", "2", "--roi", "off")
    sub = subscribe(eng.pub, ctx)
    msgs = collect(sub, lambda got: eng.proc.poll() is not None)
    assert eng.wait() == 0, eng.err
    frames = [m for t, m, _ in msgs if t == "frame"]
    assert [m["seq"] for m in frames] == list(range(45))
    videos = [m for t, m, _ in msgs if t == "video"]
    assert [m["seq"] for m in videos] == list(range(45)) and videos[-1]["frames"] == 45
    for m in frames:
        latency = m["t_publish_ns"] - m["t_capture_ns"]
        assert 0 <= latency < 5e9  # ns, both on this host's monotonic clock
        assert sum(m["stages_ns"].values()) == latency  # stages partition capture → publish exactly
        assert m["roi"] == [0, 0, 96, 80] and m["source_hw"] == [80, 96] and len(m["boxes"]) == 2
    segs = [(m, p) for t, m, p in msgs if t == "seg"]
    assert segs and all(m["t_publish_ns"] >= m["t_capture_ns"] for m, _ in segs)
    from stream.lanes import decode_png

    m, p = segs[0]
    cls = decode_png(p[0])
    assert list(cls.shape) == m["class_map"]["hw"] and cls.max() <= 4
    assert any(m["uncertainty"] is not None for m, _ in segs)
    statuses = [m for t, m, _ in msgs if t == "status"]
    assert statuses[-1]["source"]["state"] == "finished" and statuses[-1]["frames_scored"] == 45
    assert statuses[-1]["lanes"]["scoring"]["enabled"] and statuses[-1]["lanes"]["segmentation"]["enabled"]
    # the recorder holds exactly what was published
    rec = read_results(next(tmp_path.glob("*.lusr.msgpack")), validate=True)
    assert [r.msg["seq"] for r in rec.topic("frame")] == list(range(45))
    sub.close()
    ctx.term()


def test_afap_clip_is_lossless(models: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "long.mp4", 150)
    eng = Engine(models, "--clip", str(clip), "--as-fast-as-possible", "--record", str(tmp_path),
                 "--buffer", "2", "--aggregator", "argmax_mean", "--window", "30")
    assert eng.wait() == 0, eng.err
    rec = read_results(next(tmp_path.glob("*.lusr.msgpack")), validate=True)
    assert [r.msg["seq"] for r in rec.topic("frame")] == list(range(150))
    video = rec.topic("video")
    assert video[-1].msg["frames"] == 30 and video[-1].msg["kind"] == "argmax_mean"
    assert rec.topic("status")[-1].msg["drops"]["capture"] == 0


def _afap_images(models: Path, tmp_path: Path, stalled: bool) -> int:
    ctx = zmq.Context()
    eng = Engine(models, "--synthetic", "--as-fast-as-possible", "--max-frames", "400", "--publish-frames",
                 "--record-frames", "--record", str(tmp_path))
    sub = None
    if stalled:  # connects, never reads: 400 × 35 kB images (14 MB) overflow its socket buffers
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 1)
        sub.setsockopt(zmq.RCVBUF, 4096)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(eng.pub)
    assert eng.wait(120) == 0, eng.err
    rec = read_results(next(tmp_path.glob("*.lusr.msgpack")))
    if sub is not None:
        sub.close(0)
    ctx.term()
    return len(rec.topic("image"))


def test_stalled_subscriber_costs_nothing(models: Path, tmp_path: Path) -> None:
    images = _afap_images(models, tmp_path / "a", stalled=False)
    images_stalled = _afap_images(models, tmp_path / "b", stalled=True)
    assert images == images_stalled == 400  # everything published and recorded in both runs (≈14 MB)
    # what it costs in throughput is measured, not asserted: tools/bench_stalled_subscriber.py


def test_control_survives_garbage_then_stops(models: Path) -> None:
    eng = Engine(models, "--synthetic", "--fps", "30")
    try:
        st = eng.wait_ready()
        assert st["source"]["state"] == "running" and st["security"] == "loopback"
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        sock.connect(eng.ctrl)
        bad = (b"\xc1\x00garbage", wire.pack([1, 2]), wire.pack({"cmd": "explode"}), wire.pack({"x": 1}))
        for raw in bad:
            sock.send(raw)
            reply = wire.unpack(sock.recv())
            assert reply["ok"] is False and reply["error"]
        sock.close()
        assert eng.control("reset") == {"v": 1, "ok": True, "cmd": "reset", "clip": 1}
        after = eng.control("status")["status"]
        assert after["frames_scored"] >= st["frames_scored"]
        assert set(eng.control("help")["commands"]) >= {"status", "reset", "stop", "help"}
        assert eng.control("stop")["ok"]
        assert eng.wait(30) == 0, eng.err
    finally:
        if eng.proc.poll() is None:
            eng.proc.kill()


def test_kill9_loses_at_most_one_second(models: Path, tmp_path: Path) -> None:
    eng = Engine(models, "--synthetic", "--fps", "30", "--record", str(tmp_path))
    eng.wait_ready()
    time.sleep(2.0)
    eng.proc.send_signal(signal.SIGKILL)
    killed_ns = time.monotonic_ns()
    eng.wait(10)
    rec = read_results(next(tmp_path.glob("*.lusr.msgpack")))
    frames = rec.topic("frame")
    assert len(frames) > 30
    assert [r.msg["seq"] for r in frames] == list(range(frames[0].msg["seq"], frames[-1].msg["seq"] + 1))
    assert killed_ns - frames[-1].msg["t_publish_ns"] <= 1e9


def test_sigterm_is_a_clean_exit(models: Path, tmp_path: Path) -> None:
    eng = Engine(models, "--synthetic", "--fps", "30", "--record", str(tmp_path))
    eng.wait_ready()
    eng.proc.send_signal(signal.SIGTERM)
    assert eng.wait(30) == 0, eng.err
    rec = read_results(next(tmp_path.glob("*.lusr.msgpack")), validate=True)
    assert rec.truncated_bytes == 0 and rec.error is None
    assert rec.records[-1].topic == "status" and rec.records[-1].msg["source"]["state"] == "stopped"


def test_truncated_clip_exits_nonzero_after_recording_what_decoded(models: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "full.avi", 90, fourcc="MJPG")  # AVI: frames decode up to the cut
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    eng = Engine(models, "--clip", str(cut), "--as-fast-as-possible", "--record", str(tmp_path))
    code = eng.wait()
    rec = read_results(next(tmp_path.glob("*.lusr.msgpack")), validate=True)
    seqs = [r.msg["seq"] for r in rec.topic("frame")]
    assert code == 3, eng.err
    assert 0 < len(seqs) < 90 and seqs == list(range(len(seqs)))
    last = rec.topic("status")[-1].msg
    assert last["source"]["state"] == "failed" and last["source"]["error"]
    assert "source ended with an error" in eng.err


def test_device_missing_exits_3_naming_the_device(models: Path, tmp_path: Path) -> None:
    eng = Engine(models, "--device", "/dev/video97", "--record", str(tmp_path))
    assert eng.wait() == 3
    assert "/dev/video97" in eng.err and "not found" in eng.err
    last = read_results(next(tmp_path.glob("*.lusr.msgpack")), validate=True).topic("status")[-1].msg
    assert last["source"]["state"] == "failed" and "/dev/video97" in last["source"]["error"]


@pytest.mark.parametrize("mode", ["error", "stall"])
def test_source_lost_and_recovered(models: Path, tmp_path: Path, mode: str) -> None:
    ctx = zmq.Context()
    eng = Engine(models, "--synthetic", "--fps", "30", "--outage", f"20:2.5:{mode}", "--max-frames", "60",
                 "--record", str(tmp_path))
    sub = subscribe(eng.pub, ctx)
    msgs = collect(sub, lambda got: eng.proc.poll() is not None)
    assert eng.wait() == 0, eng.err  # the engine never exits on a lost source
    states = [m["source"]["state"] for t, m, _ in msgs if t == "status"]
    assert "lost" in states and states.index("lost") < len(states) - 1 - states[::-1].index("running")
    frames = read_results(next(tmp_path.glob("*.lusr.msgpack"))).topic("frame")
    assert len(frames) == 60  # frames before and after the outage are all scored and recorded
    sub.close()
    ctx.term()


def test_curve_keys_encrypt_both_sockets(models: Path, tmp_path: Path) -> None:
    from stream.security import configure_client, keygen

    keys = keygen(tmp_path / "keys")
    ctx = zmq.Context()
    eng = Engine(models, "--synthetic", "--fps", "30", "--keys", str(tmp_path / "keys"))
    try:
        good = ctx.socket(zmq.SUB)
        configure_client(good, keys.client_secret, keys.server_public)
        plain = subscribe(eng.pub, ctx)
        good.setsockopt(zmq.LINGER, 0)
        good.setsockopt(zmq.SUBSCRIBE, b"status")
        good.connect(eng.pub)
        assert good.poll(20_000), eng.err
        topic, msg, _ = wire.decode(good.recv_multipart())
        assert topic == "status" and msg["security"] == "curve"
        assert not plain.poll(1500)  # a plaintext subscriber gets nothing from a CURVE socket
        req = ctx.socket(zmq.REQ)
        configure_client(req, keys.client_secret, keys.server_public)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, 5000)
        req.connect(eng.ctrl)
        req.send(wire.pack({"cmd": "stop"}))
        assert wire.unpack(req.recv())["ok"]
        assert eng.wait(30) == 0, eng.err
        for s in (good, plain, req):
            s.close()
    finally:
        if eng.proc.poll() is None:
            eng.proc.kill()
        ctx.term()


def test_engine_without_models_runs_and_says_so(tmp_path: Path, clip30: Path) -> None:
    eng = Engine(tmp_path, "--clip", str(clip30), "--as-fast-as-possible", "--record", str(tmp_path),
                 "--no-scoring")
    assert eng.wait() == 0, eng.err
    rec = read_results(next(tmp_path.glob("*.lusr.msgpack")), validate=True)
    lanes = rec.topic("status")[-1].msg["lanes"]
    assert not lanes["scoring"]["enabled"] and "no frame-score model" in lanes["scoring"]["reason"]
    assert not lanes["segmentation"]["enabled"]
    assert "scoring lane off" in eng.err


def test_engine_without_a_frame_model_refuses_to_start(tmp_path: Path, clip30: Path) -> None:
    """Installed without its models (or --engines pointing at the wrong folder) the engine must not run
    on publishing nothing useful: exit 2, naming the folder and the fixes, and nothing recorded."""
    eng = Engine(tmp_path, "--clip", str(clip30), "--as-fast-as-possible", "--record", str(tmp_path / "rec"))
    assert eng.wait() == 2, eng.err
    assert f"no frame-score model in {tmp_path}" in eng.err
    assert "--engines DIR" in eng.err and "--no-scoring" in eng.err and "Traceback" not in eng.err
    assert not list(tmp_path.rglob("*.lusr.msgpack"))


@pytest.mark.realclips
@pytest.mark.slow
def test_every_real_clip_streams(models: Path, real_clips_dir: Path, tmp_path: Path) -> None:
    with open(real_clips_dir / "index.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        out = tmp_path / row["file"]
        eng = Engine(models, "--clip", str(real_clips_dir / row["file"]), "--as-fast-as-possible",
                     "--record", str(out), "--seg-every", "10")
        code = eng.wait(120)
        assert code == 0, (row["file"], eng.err)
        rec = read_results(next(out.glob("*.lusr.msgpack")), validate=True)
        seqs = [r.msg["seq"] for r in rec.topic("frame")]
        held = rec.topic("status")[-1].msg["drops"].get("roi_search", 0)  # scanner UI before the image
        assert seqs == list(range(held, held + len(seqs))), row["file"]
        assert held + len(seqs) == int(row["frames"]), row["file"]  # lossless: every other frame scored
        assert held == (2 if row["file"].startswith("citab__") else 0), row["file"]
    assert os.environ.get("LUS_REAL_CLIPS")
