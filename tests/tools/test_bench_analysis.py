"""The benchmark's run analysis, FLOP counter and process monitor on hand-built inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.bench.engine_run import analyse
from stream.bench.procmon import ProcSamples

MS = 1_000_000


@dataclass
class _Rec:
    topic: str
    msg: dict[str, Any]


class _Results:
    def __init__(self, records: list[_Rec]) -> None:
        self.records = records

    def topic(self, name: str) -> list[_Rec]:
        return [r for r in self.records if r.topic == name]


def _frame(seq: int, batch: int = 1) -> dict[str, Any]:
    t_cap = seq * 33 * MS
    return {
        "seq": seq, "t_capture_ns": t_cap, "t_publish_ns": t_cap + 10 * MS, "batch": batch,
        "stages_ns": {"wait": 2 * MS, "preprocess": 1 * MS, "infer": 4 * MS * batch, "aggregate": MS // 10,
                      "publish": MS // 100},
    }  # fmt: skip


def test_analyse_counts_drops_by_where_they_happened() -> None:
    # capture read 10 frames (0..9); seq 4 was dropped in the capture buffer; 9 was read after the
    # engine stopped (not a drop); 2 was scored but never reached the subscriber.
    recorded = [_Rec("frame", _frame(s)) for s in (0, 1, 2, 3, 5, 6, 7, 8)]
    recorded.append(
        _Rec("status", {"source": {"read": 10}, "drops": {"capture": 1, "publish": 0}, "lanes": {}})
    )
    rows = [
        {"topic": "frame", **m.msg, "t_recv_ns": m.msg["t_publish_ns"] + 2 * MS}
        for m in recorded if m.topic == "frame" and m.msg["seq"] != 2
    ]  # fmt: skip
    out = analyse(_Results(recorded), {"rows": rows, "last_status": None})
    d = out["scoring"]["drops"]
    assert d == {
        "read": 10, "recorded": 8, "received": 7, "capture_buffer": 1, "read_after_last_scored": 1,
        "transport": 1, "transport_before_first_received": 0, "total": 2, "status_capture_dropped": 1,
        "status_publish_dropped": 0,
    }  # fmt: skip
    s = out["scoring"]
    assert s["end_to_end"]["p50_ms"] == pytest.approx(12.0)
    assert s["capture_to_publish"]["max_ms"] == pytest.approx(10.0)
    assert s["publish_to_receive"]["mean_ms"] == pytest.approx(2.0)
    assert s["infer_per_frame"]["p50_ms"] == pytest.approx(4.0)
    # 8 frames published 33 ms apart except the gap at seq 4: 7 intervals over (8 - 0) * 33 ms
    assert s["fps"] == pytest.approx(7 / (8 * 0.033))


def test_analyse_divides_batch_inference_per_frame_and_keeps_batch1_aggregates() -> None:
    recorded = [
        _Rec("frame", _frame(0, batch=1)),
        _Rec("frame", _frame(1, batch=4)),
        _Rec("frame", _frame(2, 4)),
    ]
    out = analyse(_Results(recorded), {"rows": [], "last_status": None})
    assert out["scoring"]["infer_per_frame"]["max_ms"] == pytest.approx(4.0)
    assert out["scoring"]["aggregate_batch1"]["n"] == 1
    assert out["scoring"]["max_batch"] == 4
    assert out["scoring"]["drops"]["transport"] == 3  # nothing received
    assert out["scoring"]["drops"]["transport_before_first_received"] == 3


def test_window_cpu_percent_uses_samples_inside_the_window() -> None:
    p = ProcSamples("engine", 1)
    for t, cpu in ((0.0, 0.0), (1.0, 0.2), (2.0, 1.2), (3.0, 2.2), (4.0, 2.3)):
        p.add(t, cpu, rss=100 * 2**20, threads=3)
    assert p.window_cpu_percent(1.0, 3.0) == pytest.approx(100.0)  # 2 CPU s over 2 s
    s = p.summary((1.0, 3.0))
    assert s["cpu_percent"] == pytest.approx(57.5)  # 2.3 CPU s over 4 s
    assert s["cpu_percent_streaming"] == pytest.approx(100.0)
    assert s["peak_rss_mb"] == pytest.approx(100.0)


def _onnx_model(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((8, 1, 3, 3), np.float32), "w")  # Conv 1→8, 3×3, pad 1
    g = numpy_helper.from_array(np.zeros((8, 4), np.float32), "g")  # Gemm 8→4
    m = numpy_helper.from_array(np.zeros((4, 5), np.float32), "m")  # MatMul 4→5
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "g"], ["y"]),
        helper.make_node("MatMul", ["y", "m"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 16, 16])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 5])], [w, g, m],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_flop_counter_matches_hand_count(tmp_path: Path) -> None:
    from stream.bench.flops import count_flops

    path = _onnx_model(tmp_path / "t.onnx")
    fc = count_flops(path)
    conv = 2 * (8 * 16 * 16) * (1 * 3 * 3)
    assert fc.by_op == {"Conv": conv, "Gemm": 2 * 8 * 4, "MatMul": 2 * 4 * 5}
    assert fc.flops == conv + 64 + 40
    assert fc.unresolved == []
    assert count_flops(path, batch=3).flops == 3 * fc.flops
