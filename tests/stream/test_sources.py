"""Sources decode real files written at test time: containers and codecs, DICOM, folders, URLs,
and their errors name the thing and the fix."""

from __future__ import annotations

import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stream.capture import CaptureProcess, SourceSpec
from stream.sources import (
    ClipSource,
    DeviceSource,
    DicomSource,
    FolderSource,
    SourceDecodeError,
    SourceOpenError,
)

N = 24


def _frame(i: int, h: int = 64, w: int = 96) -> np.ndarray:
    """Grey frame i: dark noise-free background with a bright bar whose left edge is at x = 2 i."""
    img = np.full((h, w), 30, np.uint8)
    img[16:48, 2 * i : 2 * i + 24] = 220
    return img


def _bar_x(gray: np.ndarray) -> int:
    cols = gray[16:48].mean(axis=0) > 125
    return int(np.argmax(cols))


def _write_pyav(path: Path, codec: str, fmt: str | None = None, pix_fmt: str = "yuv420p") -> None:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=25, options={"threads": "1"} if codec == "libx264" else {})
        stream.width, stream.height, stream.pix_fmt = 96, 64, pix_fmt
        for i in range(N):
            rgb = cv2.cvtColor(_frame(i), cv2.COLOR_GRAY2RGB)
            video_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(video_frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _write_opencv_avi(path: Path) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (96, 64))
    assert writer.isOpened()
    for i in range(N):
        writer.write(cv2.cvtColor(_frame(i), cv2.COLOR_GRAY2BGR))
    writer.release()


def _decode_all(source: ClipSource) -> list[tuple[np.ndarray, float | None]]:
    source.open()
    out = []
    while (item := source.read()) is not None:
        out.append(item)
    source.close()
    return out


WRITERS = {
    "clip.mp4": lambda p: _write_pyav(p, "libx264"),
    "clip.mov": lambda p: _write_pyav(p, "libx264"),
    "clip.mkv": lambda p: _write_pyav(p, "libx264"),
    "clip.avi": _write_opencv_avi,
    "clip.gif": lambda p: _write_pyav(p, "gif", pix_fmt="rgb8"),
    "clip.mpeg": lambda p: _write_pyav(p, "mpeg2video", fmt="mpeg"),  # MPEG-PS: no frame count
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_container_decodes_every_frame_in_order(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    WRITERS[name](path)
    source = ClipSource(str(path))
    frames = _decode_all(source)
    assert len(frames) == N
    assert [_bar_x(img) for img, _ in frames] == [2 * i for i in range(N)]
    times = [t for _, t in frames]
    assert np.all(np.diff(times) > 0)
    assert source.info["hw"] == [64, 96]
    if name == "clip.mpeg":
        assert source.info["frames"] is None
    if name != "clip.gif":  # GIF delays are in 1/100 s: 25 fps is stored as 4 cs → 25 fps
        assert source.info["fps"] == pytest.approx(25.0)


@pytest.mark.parametrize("name", ["clip.mkv", "clip.gif"])
def test_truncation_is_reported_without_a_frame_count(tmp_path: Path, name: str) -> None:
    whole = tmp_path / name
    WRITERS[name](whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    source = ClipSource(str(cut))
    source.open()
    n = 0
    with pytest.raises(SourceDecodeError) as info:
        while source.read() is not None:
            n += 1
    assert 0 < n < N
    assert info.value.frame == n and info.value.byte is not None and info.value.byte <= len(data)
    assert f"stopped at frame {n}" in str(info.value)


def test_mp4_cut_before_its_index_cannot_open_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_pyav(path, "libx264")  # the 'moov' index is written at the end
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(SourceOpenError, match="moov"):
        ClipSource(str(path)).open()


def test_file_url_decodes_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    WRITERS["clip.mkv"](path)
    source = ClipSource(path.as_uri())
    assert source.is_url and not source.live  # file/http: paced by the capture loop
    frames = _decode_all(source)
    assert [_bar_x(img) for img, _ in frames] == [2 * i for i in range(N)]
    assert ClipSource("rtsp://127.0.0.1:8554/us").live


def test_missing_clip_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SourceOpenError, match=r"nothing\.mp4"):
        ClipSource(str(tmp_path / "nothing.mp4")).open()


def _write_dicom(path: Path, frames: np.ndarray, frame_time_ms: float | None = 40.0) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    if frame_time_ms is not None:
        ds.FrameTime = frame_time_ms
    photometric = "RGB" if frames.ndim == 4 else "MONOCHROME2"
    ds.set_pixel_data(frames, photometric, 8)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_cine_loop_through_the_capture_process(tmp_path: Path) -> None:
    frames = np.stack([_frame(i) for i in range(12)])
    path = tmp_path / "cine.dcm"
    _write_dicom(path, frames, frame_time_ms=40.0)
    spec = SourceSpec("dicom", str(path), as_fast_as_possible=True, roi="off")
    with CaptureProcess(spec) as cap:
        got = []
        while not cap.finished:
            f = cap.get(1.0)
            if f is not None:
                got.append(f)
        st = cap.stats()
    assert st["exit_error"] is None and st["source"]["fps"] == pytest.approx(25.0)
    assert [f.seq for f in got] == list(range(12))
    for f in got:
        np.testing.assert_array_equal(f.image, frames[f.seq])  # uncompressed: bit exact


def test_rgb_dicom_becomes_grey(tmp_path: Path) -> None:
    grey = np.stack([_frame(i) for i in range(3)])
    rgb = np.repeat(grey[..., None], 3, axis=3)
    path = tmp_path / "rgb.dcm"
    _write_dicom(path, rgb, frame_time_ms=None)
    source = DicomSource(path, fps=10.0)
    info = source.open()
    assert info["frames"] == 3 and info["fps"] == 10.0 and info["photometric"] == "RGB"
    out = [source.read() for _ in range(3)]
    assert source.read() is None
    for i, (img, t) in enumerate(out):
        assert img.ndim == 2 and np.abs(img.astype(int) - grey[i]).max() <= 1
        assert t == pytest.approx(i / 10.0)


def test_not_a_dicom_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(b"not a dicom file at all")
    with pytest.raises(SourceOpenError, match=r"x\.dcm"):
        DicomSource(path).open()


def test_folder_natural_order_and_16_bit_images(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), _frame(i))
    cv2.imwrite(str(tmp_path / "f11.png"), (_frame(11).astype(np.uint16) * 257))  # 16-bit PNG
    (tmp_path / "notes.txt").write_text("ignored")
    source = FolderSource(tmp_path, fps=5.0)
    assert source.open()["frames"] == 4
    items = [source.read() for _ in range(4)]
    assert source.read() is None
    assert [_bar_x(img) for img, _ in items] == [2, 4, 20, 22]
    assert items[3][0].dtype == np.uint8
    assert [t for _, t in items] == pytest.approx([0.0, 0.2, 0.4, 0.6])


def test_empty_folder_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(SourceOpenError, match=r"no images \(looked for .png"):
        FolderSource(tmp_path).open()


def test_device_missing_names_the_device_and_the_fix() -> None:
    with pytest.raises(SourceOpenError) as info:
        DeviceSource(97).open()
    message = str(info.value)
    assert "/dev/video97" in message and "does not exist" in message and "v4l2-ctl" in message


def test_device_that_is_not_a_camera_lists_what_was_tried(tmp_path: Path) -> None:
    fake = tmp_path / "video0"
    fake.write_bytes(b"\0" * 16)
    with pytest.raises(SourceOpenError) as info:
        DeviceSource(str(fake)).open()
    message = str(info.value)
    assert str(fake) in message and "OpenCV" in message and "PyAV" in message


def test_synthetic_source_through_the_capture_process() -> None:
    spec = SourceSpec("synthetic", seed=3, fps=200.0, height=120, width=160)
    with CaptureProcess(spec, capacity=16) as cap:
        frames = [cap.get(10.0) for _ in range(20)]
    assert all(f is not None for f in frames)
    assert [f.seq for f in frames] == sorted(f.seq for f in frames)
    assert frames[0].image.shape == (120, 160) and frames[0].roi == (0, 0, 160, 120)


def test_http_url_through_the_capture_process(tmp_path: Path) -> None:
    """A network stream read by PyAV in the capture process (a local HTTP server stands in for it)."""
    import functools
    import http.server
    import threading

    WRITERS["clip.mkv"](tmp_path / "clip.mkv")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://user:secret@127.0.0.1:{server.server_address[1]}/clip.mkv?token=x"
        spec = SourceSpec("url", url, as_fast_as_possible=True, roi="off")
        with CaptureProcess(spec) as cap:
            frames = []
            while not cap.finished:
                f = cap.get(1.0)
                if f is not None:
                    frames.append(f)
            st = cap.stats()
    finally:
        server.shutdown()
    assert [_bar_x(f.image) for f in frames] == [2 * i for i in range(N)]
    assert st["exit_error"] is None
    assert "secret" not in str(st) and "token" not in str(st)  # credentials never reach the status
    assert frames[0].source_id == f"http://127.0.0.1:{server.server_address[1]}/clip.mkv"


def test_live_network_stream_that_drops_is_lost_then_recovered(tmp_path: Path) -> None:
    """A live (self-paced) MPEG-TS stream over TCP: the server sends the clip and hangs up; the
    capture reports ``lost``, reconnects with backoff and recovers on the next connection."""
    import socket
    import threading

    _write_pyav(tmp_path / "live.ts", "mpeg2video", fmt="mpegts")
    payload = (tmp_path / "live.ts").read_bytes()
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(20)
    connections = []

    def serve() -> None:
        for _ in range(2):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            connections.append(conn)
            with conn:
                conn.sendall(payload)
                time.sleep(0.3)  # then hang up: the "scanner" goes away
            time.sleep(0.5)  # a gap before it accepts again

    threading.Thread(target=serve, daemon=True).start()
    url = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    spec = SourceSpec("url", url, roi="off", retry_backoff_s=(0.1, 0.4), lost_after_min_s=5.0)
    try:
        with CaptureProcess(spec, capacity=64) as cap:
            seen_lost, frames = False, []
            t_end = time.monotonic() + 30
            while time.monotonic() < t_end:
                frames += cap.get_batch(64, 0.05)
                st = cap.stats()
                seen_lost = seen_lost or st["state"] == "lost"
                if st["recoveries"] >= 1 and len(frames) >= 2 * N:
                    break
    finally:
        server.close()
    assert seen_lost and st["recoveries"] >= 1 and st["exit_error"] is None
    assert len(connections) == 2
    assert [f.seq for f in frames] == list(range(len(frames)))
    bars = [_bar_x(f.image) for f in frames[: 2 * N]]
    assert bars == [2 * i for i in range(N)] * 2  # the whole clip, twice, in order
