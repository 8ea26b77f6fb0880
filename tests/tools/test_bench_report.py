"""The benchmark report: every stage in the Markdown, every contract key in the JSON, the PNGs decode.

The end-to-end test runs ``tools/bench.py`` on the synthetic source with tiny models (real engine,
subscriber and naive-loop processes); it asserts what was written, never how fast anything was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from stream.bench import isolated, report
from stream.bench.engine_run import analyse
from tests.tools.test_bench_analysis import _frame, _Rec, _Results

REPO = Path(__file__).resolve().parents[2]


def _run(mode: str, backend: str = "onnxruntime") -> dict:
    recorded = [_Rec("frame", _frame(s)) for s in range(6)]
    recorded += [
        _Rec(
            "seg",
            {
                "seq": 2,
                "t_capture_ns": 0,
                "t_publish_ns": 90_000_000,
                "stages_ns": {"wait": 1, "preprocess": 2, "infer": 80_000_000, "publish": 3},
            },
        )
    ]
    recorded.append(
        _Rec(
            "status",
            {
                "source": {"read": 6},
                "drops": {},
                "lanes": {
                    "scoring": {"enabled": True, "model": "tiny 0.0.1"},
                    "segmentation": {"enabled": True, "model": "seg"},
                },
            },
        )
    )
    rows = [
        {"topic": "frame", **r.msg, "t_recv_ns": r.msg["t_publish_ns"] + 1_000_000}
        for r in recorded
        if r.topic == "frame"
    ]
    res = analyse(_Results(recorded), {"rows": rows, "last_status": None})
    samples = res.pop("samples")
    res |= {
        "label": "syn",
        "source": "syn",
        "mode": mode,
        "backend": backend,
        "processes": [
            {
                "role": "engine",
                "cpu_percent": 50.0,
                "cpu_percent_streaming": 80.0,
                "cpu_s": 1.0,
                "wall_s": 2.0,
                "peak_rss_mb": 100.0,
                "threads_max": 5,
            }
        ],
        "command": "lus-stream --synthetic",
    }
    return res, samples


def _result() -> tuple[dict, dict]:
    paced, s1 = _run("paced")
    afap, s2 = _run("afap")
    iso = {
        "decode": isolated._summary([1_000_000, 2_000_000]),
        "roi": isolated._summary([500_000]),
        "preprocess": {"frame": isolated._summary([300_000])},
        "aggregator": isolated.aggregator_times(None, n_total=300, checkpoints=(100, 300)),
    }
    iso["aggregator"]["update_us_at_100000"] = iso["aggregator"]["update_us_at_300"]
    iso["aggregator"]["update_us_p99_at_100000"] = iso["aggregator"]["update_us_p99_at_300"]
    result = {
        "created_utc": "now", "command": "tools/bench.py --synthetic", "machine": {"cores": 2},
        "sources": [{"label": "syn"}], "runs": [paced, afap], "isolated": iso,
        "naive": {"available": True, "fps": 10.0, "frames": 6, "model_source": "x", "threads": 1,
                  "end_to_end": {"p50_ms": 5.0}},
        "threads": [{"threads": 1, "with_seg": True, "spinning": False, "score_p50_ms": 1.0,
                     "score_p99_ms": 2.0, "score_fps": 900.0, "seg_fps": 3.0, "cpu_percent": 190.0}],
    }  # fmt: skip
    result["contract"] = report.contract(result)
    result |= result["contract"]
    result["targets"] = report.targets(result["contract"])
    return result, {"syn/onnxruntime/paced": s1, "syn/onnxruntime/afap": s2}


def test_contract_keys_and_values_from_runs() -> None:
    result, _ = _result()
    for key in report.CONTRACT_KEYS:
        report.get_dotted(result, key)  # raises KeyError if absent
    c = result["contract"]
    assert c["scoring_lane"]["paced"]["frames"] == 6
    assert c["scoring_lane"]["paced"]["drops"] == 0
    assert c["scoring_lane"]["paced"]["p99_ms"] == pytest.approx(11.0)  # 10 ms engine + 1 ms transport
    assert c["speedup_vs_naive"] == pytest.approx(c["scoring_lane"]["afap_fps"] / 10.0)
    met = {t["target"]: t["met"] for t in result["targets"]}
    assert met["scoring lane paced: drops"] is True
    assert met["segmentation lane (with scoring at its target)"] is None  # a single seg run has no rate


def test_report_files_hold_every_stage_and_key(tmp_path: Path) -> None:
    result, samples = _result()
    files = report.write_report(result, tmp_path / "out", tmp_path / "bench.json", samples)
    md = files["markdown"].read_text()
    for stage in report.STAGES:
        assert f"| {stage} |" in md, stage
    data = json.loads((tmp_path / "bench.json").read_text())
    for key in report.CONTRACT_KEYS:
        report.get_dotted(data, key)
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in pngs] == ["end_to_end_cdf.png", "end_to_end_hist.png"]
    for p in pngs:
        assert cv2.imread(str(p)) is not None


@pytest.mark.slow
def test_bench_end_to_end_on_the_synthetic_source(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the tiny test models are exported with torch")
    from engines.testing import make_tiny_onnx

    models = tmp_path / "models"
    make_tiny_onnx(models / "frame", "frame", size_hw=(32, 32))
    make_tiny_onnx(models / "seg", "seg", size_hw=(20, 16))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(REPO / "tools" / "bench.py"),
        "--synthetic",
        "--synthetic-frames",
        "12",
        "--engines",
        str(models),
        "--backends",
        "onnxruntime",
        "--out",
        str(out),
        "--json",
        str(tmp_path / "bench.json"),
        "--threads-seconds",
        "0.1",
        "--model-seconds",
        "0.05",
        "--aggregator-frames",
        "500",
        "--isolated-frames",
        "8",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=170, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "bench.json").read_text())
    for key in report.CONTRACT_KEYS:
        report.get_dotted(data, key)
    assert data["scoring_lane"]["paced"]["frames"] + data["scoring_lane"]["paced"]["drops"] == 12
    assert {(r["mode"], r["backend"]) for r in data["runs"]} == {
        ("paced", "onnxruntime"),
        ("afap", "onnxruntime"),
    }
    afap = next(r for r in data["runs"] if r["mode"] == "afap")
    assert afap["scoring"]["drops"]["total"] == 0  # lossless as fast as possible
    assert data["naive"]["available"] and data["naive"]["frames"] == 12
    assert len(data["threads"]) == 12  # 4 scoring-alone + 8 paced-with-segmentation configurations
    md = (out / "bench.md").read_text()
    for stage in report.STAGES:
        assert f"| {stage} |" in md
    assert (out / "end_to_end_cdf.png").is_file()
