"""Real data end to end: two COVID-BLUES patients imported into the layout, one of their clips scored by
the shipped models through the real engine (``lus-stream --clip … --as-fast-as-possible --record``).

Runs when the COVID-BLUES copy exists (``LUS_COVID_BLUES``, default ``../shared/data/covid-blues``
beside the repository; CI has it) and skips with the reason otherwise. Nothing is copied: the
import references the clips in place.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines.manifest import load_manifest
from stream.recorder import read_results
from train.data.importer import import_clips
from train.data.layout import count_frames, read_dataset
from train.real.cache import clips_from_layout

REPO = Path(__file__).resolve().parents[2]
COVID_BLUES = Path(os.environ.get("LUS_COVID_BLUES", REPO.parent / "shared/data/covid-blues"))


@pytest.fixture(scope="module")
def two_patients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (COVID_BLUES / "index.csv").is_file():
        pytest.skip(f"no COVID-BLUES copy at {COVID_BLUES} (set LUS_COVID_BLUES to run the real-data tests)")
    rows = list(csv.DictReader((COVID_BLUES / "index.csv").open()))
    first_two = list(dict.fromkeys(r["patient_id"] for r in rows))[:2]
    out = tmp_path_factory.mktemp("covid-blues") / "two"
    import_clips(COVID_BLUES, out, patients=first_two)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_clip_scores_of_imported_patients_are_the_experts(two_patients: Path) -> None:
    rows = {
        r["file"].removesuffix(".mp4"): int(r["label"])
        for r in csv.DictReader((COVID_BLUES / "index.csv").open())
    }
    clips = clips_from_layout(two_patients)
    assert len({c.patient_id for c in clips}) == 2
    assert all(c.label == rows[c.video_id] and c.zone in {"L1", "L2", "L3", "R1", "R2", "R3"} for c in clips)


def test_the_shipped_model_scores_every_frame_of_a_real_clip(two_patients: Path, tmp_path: Path) -> None:
    record = read_dataset(two_patients)[0]
    cmd = [
        sys.executable,
        "-m",
        "stream.cli",
        "--clip",
        str(record.path),
        "--as-fast-as-possible",
        "--record",
        str(tmp_path),
        "--ctrl",
        "none",
        "--pub",
        f"tcp://127.0.0.1:{_free_port()}",
        "--seg-every",
        "1000000000",
        "--engines",
        str(REPO / "models"),
        "--backend",
        "onnxruntime",
    ]
    res = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert res.returncode == 0, res.stderr[-2000:]
    results = read_results(next(tmp_path.glob("*.lusr.msgpack")), validate=True)
    frames, videos = results.topic("frame"), results.topic("video")
    n = count_frames(record)
    assert len(frames) == len(videos) == n  # lossless: every decoded frame scored and aggregated
    probs = np.array([f.msg["probs"] for f in frames])
    assert np.allclose(probs.sum(1), 1, atol=1e-4) and all(0 <= f.msg["score"] <= 3 for f in frames)
    assert videos[-1].msg["frames"] == n and 0 <= videos[-1].msg["score"] <= 3
    manifest = load_manifest(REPO / "models" / "frame" / "regstn.json", verify_file=False)
    status = results.topic("status")[-1].msg
    assert status["lanes"]["scoring"]["domain"] == manifest["training"].get("domain")
    if manifest["training"].get("domain") == "real":
        assert not status.get("domain_warning")
