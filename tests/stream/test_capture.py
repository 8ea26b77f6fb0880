"""The capture process end to end: real spawned processes, shared memory, real files."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import psutil
import pytest

from stream.capture import CaptureProcess, SourceSpec


def _frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    img = np.full((h, w), (i * 5) % 256, np.uint8)
    img[:, : i % w] = 255 - img[0, 0]
    return img


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(40):
        cv2.imwrite(str(d / f"frame{i}.png"), _frame(i))  # natural order: frame2 before frame10
    return d


def _drain(cap: CaptureProcess, delay: float = 0.0, limit_s: float = 30.0) -> list:
    frames = []
    t_end = time.monotonic() + limit_s
    while not cap.finished and time.monotonic() < t_end:
        f = cap.get(0.5)
        if f is not None:
            frames.append(f)
            time.sleep(delay)
    return frames


def _wait_for(cap: CaptureProcess, cond, limit_s: float = 10.0) -> dict:
    t_end = time.monotonic() + limit_s
    while time.monotonic() < t_end:
        st = cap.stats()
        if cond(st):
            return st
        time.sleep(0.02)
    raise AssertionError(f"condition not reached in {limit_s} s; last stats {cap.stats()}")


def test_folder_as_fast_as_possible_is_lossless_and_ordered(folder: Path) -> None:
    spec = SourceSpec("folder", str(folder), as_fast_as_possible=True, roi="off")
    with CaptureProcess(spec, capacity=2) as cap:
        frames = _drain(cap, delay=0.003)  # a consumer slower than the reader
        st = cap.stats()
    assert [f.seq for f in frames] == list(range(40))
    for f in frames:
        np.testing.assert_array_equal(f.image, _frame(f.seq))
        assert f.roi == (0, 0, 64, 48) and f.source_hw == (48, 64) and f.source_id == "frames"
    t = [f.t_capture_ns for f in frames]
    assert np.all(np.diff(t) > 0)
    assert t[-1] <= time.monotonic_ns()  # the same clock as this process
    assert st["dropped"] == 0 and st["read"] == 40 and st["state"] == "finished" and st["exit_error"] is None


def test_paced_playback_drops_the_oldest_and_counts(folder: Path) -> None:
    spec = SourceSpec("folder", str(folder), fps=400.0, roi="off")  # paced: never waits for the consumer
    with CaptureProcess(spec, capacity=3) as cap:
        _wait_for(cap, lambda s: s["state"] in ("finished", "failed"))
        st = cap.stats()
        frames = _drain(cap)
    assert st["read"] == 40 and st["dropped"] == 37
    assert [f.seq for f in frames] == [37, 38, 39]
    np.testing.assert_array_equal(frames[-1].image, _frame(39))


def test_loop_restarts_a_finite_source(folder: Path) -> None:
    spec = SourceSpec("folder", str(folder), as_fast_as_possible=True, loop=True, roi="off")
    with CaptureProcess(spec, capacity=4) as cap:
        frames = [cap.get(5.0) for _ in range(90)]
    assert [f.seq for f in frames] == list(range(90))
    np.testing.assert_array_equal(frames[85].image, _frame(85 - 80))


def _write_faststart_mp4(path: Path, n: int = 60) -> None:
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=30, options={"threads": "1"})  # same bytes on any machine
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        rng = np.random.default_rng(0)
        for i in range(n):
            img = rng.integers(0, 60, (64, 96, 3), dtype=np.uint8)
            img[20:40, i : i + 30] = 220
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_truncated_clip_decodes_partially_and_reports_where_it_stopped(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    _write_faststart_mp4(whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with CaptureProcess(SourceSpec("clip", str(cut), as_fast_as_possible=True, roi="off")) as cap:
        frames = _drain(cap)
        st = cap.stats()
    assert 5 < len(frames) < 60
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert st["state"] == "failed"
    err = cap.exit_error
    assert err is not None and "truncated" in err
    assert f"decoded {len(frames)} of 60 frames" in err
    where = re.search(r"stopped at frame (\d+), byte (\d+) of (\d+)", err)
    assert where is not None, err
    frame, byte, size = (int(v) for v in where.groups())
    # the first frame that did not decode (a partial last packet may fail before the decoder's
    # delayed frames come out, so it can be below the count), and the offset inside the cut file
    assert frame <= len(frames) and byte < size == cut.stat().st_size
    # the untouched file decodes completely through the same path
    with CaptureProcess(SourceSpec("clip", str(whole), as_fast_as_possible=True, roi="off")) as cap:
        assert len(_drain(cap)) == 60
        assert cap.exit_error is None


def test_missing_device_fails_at_once_naming_the_device() -> None:
    with CaptureProcess(SourceSpec("device", "/dev/video97")) as cap:
        st = _wait_for(cap, lambda s: s["state"] == "failed")
        assert cap.get(0.5) is None and cap.finished
    assert "/dev/video97" in st["exit_error"] and "not found" in st["exit_error"]
    assert "v4l2-ctl" in st["exit_error"]  # the fix


@pytest.mark.parametrize("mode", ["error", "stall"])
def test_lost_source_is_reported_retried_and_recovers(folder: Path, mode: str) -> None:
    spec = SourceSpec(
        "folder",
        str(folder),
        fps=50.0,
        roi="off",
        outage=(15, 1.0, mode),
        lost_after_periods=5,
        lost_after_min_s=0.2,
        retry_backoff_s=(0.05, 0.2),
    )
    with CaptureProcess(spec, capacity=64) as cap:
        st = _wait_for(cap, lambda s: s["state"] == "lost")
        assert st["error"]
        st = _wait_for(cap, lambda s: s["state"] == "running" and s["recoveries"] >= 1)
        st = _wait_for(cap, lambda s: s["read"] >= 40)  # frames flow again (the folder loops)
        frames = cap.get_batch(64, 1.0)
    assert st["lost_events"] == 1 and st["exit_error"] is None and st["error"] is None
    seqs = [f.seq for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # nothing dropped: the consumer had room
    gaps = np.diff([f.t_capture_ns for f in frames]) / 1e9
    assert gaps.max() > 0.5  # the outage is visible in the capture times


def _ui_screen_folder(root: Path, n_blank: int, n_image: int) -> Path:
    """A scanner screen (static text and a scale bar on black); after ``n_blank`` frames a moving
    speckle image appears at (200, 60, 160, 120)."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(n_blank + n_image):
        screen = np.zeros((240, 480), np.uint8)
        cv2.putText(screen, "PATIENT 0042  LUNG  12L", (10, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 200, 1)
        screen[60:180:10, 400:404] = 220  # depth dots
        if i >= n_blank:
            screen[60:180, 200:360] = rng.integers(40, 200, (120, 160), dtype=np.uint8)
        cv2.imwrite(str(root / f"screen{i:03d}.png"), screen)
    return root


def test_frames_before_the_ultrasound_region_are_held_back(tmp_path: Path) -> None:
    folder = _ui_screen_folder(tmp_path / "screen", n_blank=5, n_image=20)
    with CaptureProcess(SourceSpec("folder", str(folder), as_fast_as_possible=True)) as cap:
        frames = _drain(cap)
        st = cap.stats()
    held = st["roi_search"]  # the 5 UI-only frames, plus at most one before the next detection try
    assert held in (5, 6) and st["read"] == 25 and st["exit_error"] is None
    assert [f.seq for f in frames] == list(range(held, 25))  # the gap says: not scored
    x, y, w, h = frames[0].roi
    assert abs(x - 200) <= 4 and abs(y - 60) <= 4 and abs(w - 160) <= 8 and abs(h - 120) <= 8


def test_without_any_region_the_whole_frame_is_used_after_a_while(tmp_path: Path) -> None:
    from stream.capture import ROI_SEARCH_MAX_FRAMES

    n = ROI_SEARCH_MAX_FRAMES + 10
    folder = _ui_screen_folder(tmp_path / "screen", n_blank=n, n_image=0)  # no image ever appears
    with CaptureProcess(SourceSpec("folder", str(folder), as_fast_as_possible=True)) as cap:
        frames = _drain(cap)
        st = cap.stats()
    assert st["roi_search"] == ROI_SEARCH_MAX_FRAMES and st["read"] == n
    assert [f.seq for f in frames] == list(range(ROI_SEARCH_MAX_FRAMES, n))
    assert all(f.roi == (0, 0, 480, 240) for f in frames)


def test_roi_off_and_fixed_never_hold_frames_back(folder: Path) -> None:
    for roi in ("off", (0, 0, 32, 24)):
        with CaptureProcess(SourceSpec("folder", str(folder), as_fast_as_possible=True, roi=roi)) as cap:
            frames = _drain(cap)
            st = cap.stats()
        assert st["roi_search"] == 0 and [f.seq for f in frames] == list(range(40)), roi


@pytest.mark.realclips
def test_every_real_clip_decodes_completely(real_clips_dir: Path) -> None:
    with open(real_clips_dir / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 7
    for row in rows:
        spec = SourceSpec("clip", str(real_clips_dir / row["file"]), as_fast_as_possible=True)
        with CaptureProcess(spec, capacity=4) as cap:
            frames = _drain(cap, limit_s=60)
            st = cap.stats()
        assert st["exit_error"] is None, row["file"]
        assert st["state"] == "finished", row["file"]
        # Frames before the ultrasound region is found are held back (only the full-screen capture
        # has such frames: its first two show the scanner UI alone); every other frame arrives.
        held = st["roi_search"]
        assert held == (2 if row["file"].startswith("citab__") else 0), row["file"]
        assert [f.seq for f in frames] == list(range(held, held + len(frames))), row["file"]
        if row["frames"]:
            assert len(frames) + held == int(row["frames"]) == st["read"], row["file"]
        assert st["source"]["hw"] == [int(row["height"]), int(row["width"])]
        assert abs(st["source"]["fps"] - float(row["fps"])) < 0.05, row["file"]


def test_corrupt_clip_decodes_what_decodes_and_fails_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.mp4"
    _write_faststart_mp4(path)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 3000] = np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with CaptureProcess(SourceSpec("clip", str(path), as_fast_as_possible=True, roi="off")) as cap:
        frames = _drain(cap)
        err = cap.exit_error
    assert 30 <= len(frames) < 60  # frames after the damage still decode
    assert err is not None and "decode errors" in err and "did not decode" in err


def test_capture_process_exits_when_the_engine_is_killed(folder: Path) -> None:
    """kill -9 of the engine must not leave a capture process holding the device."""
    code = (
        "import sys, time\n"
        "from stream.capture import CaptureProcess, SourceSpec\n"
        "if __name__ == '__main__':\n"
        f"    cap = CaptureProcess(SourceSpec('folder', {str(folder)!r}, fps=100.0, loop=True)).start()\n"
        "    cap.get(30.0)\n"
        "    print(cap._proc.pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    engine = subprocess.Popen(  # its resource tracker reports (and frees) the orphaned ring on stderr
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        child = psutil.Process(int(engine.stdout.readline()))
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        engine.kill()
        engine.wait(5)
        t_end = time.monotonic() + 10
        while time.monotonic() < t_end:
            if not child.is_running() or child.status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.05)
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        engine.kill()


def test_paced_playback_never_releases_a_frame_early(folder: Path) -> None:
    """Paced at 50 fps, frame i is stamped no earlier than i/50 s after frame 0 (later is allowed:
    a loaded machine may fall behind, and then pacing re-anchors instead of bursting)."""
    spec = SourceSpec("folder", str(folder), fps=50.0, roi="off")
    with CaptureProcess(spec, capacity=64) as cap:
        frames = _drain(cap)
    assert [f.seq for f in frames] == list(range(40))
    elapsed = (np.array([f.t_capture_ns for f in frames]) - frames[0].t_capture_ns) / 1e9
    assert np.all(elapsed >= np.arange(40) / 50.0 - 0.02)  # 20 ms: frame 0 itself may be stamped late


def test_bedside_check_command(folder: Path, tmp_path: Path) -> None:
    """`python -m stream.capture`: prints the source and stats, saves the last ROI crop, exit 0;
    a missing device exits 1 with the error."""
    snap = tmp_path / "snap.png"
    cmd = [sys.executable, "-m", "stream.capture", "--folder", str(folder), "--fps", "100", "--roi", "off"]
    done = subprocess.run([*cmd, "--seconds", "20", "--snapshot", str(snap)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert '"kind": "folder"' in done.stdout and "saved seq 39" in done.stdout
    np.testing.assert_array_equal(cv2.imread(str(snap), cv2.IMREAD_GRAYSCALE), _frame(39))
    missing = subprocess.run(
        [sys.executable, "-m", "stream.capture", "--device", "/dev/video97", "--seconds", "5"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "/dev/video97" in missing.stdout
