"""Arithmetic cost of an ONNX graph: FLOPs per inference counted from Conv/ConvTranspose/Gemm/MatMul
shapes, so the benchmark can state each model's achieved GFLOP/s against the machine's measured
matrix-product peak.

Counting rule (one multiply-add = 2 FLOP; biases, activations, pooling, normalisation, resizes
and GridSample are left out — they are memory-bound and small next to the products):

* ``Conv``: 2 · |output| · (C_in / group) · kH · kW
* ``ConvTranspose``: 2 · |input| · (C_out / group) · kH · kW
* ``Gemm`` / ``MatMul``: 2 · (batch dims) · M · N · K

Shapes come from ONNX shape inference with every symbolic input dimension fixed (the batch to
``batch``); where it leaves a shape unknown (a Pad or Reshape whose sizes are computed in the
graph), the graph is run once by ONNX Runtime on zero inputs with the counted tensors exposed as
outputs, and their real shapes are used. Nodes whose shapes stay unknown are listed in
``unresolved`` (reported, not guessed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COUNTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class FlopCount:
    """FLOPs of one inference, per op type, and the nodes whose shapes could not be resolved."""

    flops: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)

    @property
    def gflop(self) -> float:
        return self.flops / 1e9

    def as_dict(self) -> dict[str, Any]:
        return {
            "gflop": self.gflop,
            "by_op_gflop": {k: v / 1e9 for k, v in self.by_op.items()},
            "unresolved": list(self.unresolved),
        }


def _fix_inputs(model: Any, batch: int) -> None:
    """Replace every symbolic input dimension by a number (the first by ``batch``, others by 1)."""
    init_names = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in init_names:
            continue
        for i, dim in enumerate(inp.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.ClearField("dim_param")
                dim.dim_value = batch if i == 0 else 1


def _shapes(model: Any) -> dict[str, list[int] | None]:
    """Tensor name → static shape (None where unknown), from value_info, inputs, outputs, initializers."""
    out: dict[str, list[int] | None] = {}
    g = model.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            out[vi.name] = None
            continue
        dims = [int(d.dim_value) if d.HasField("dim_value") else 0 for d in t.shape.dim]
        out[vi.name] = None if any(d <= 0 for d in dims) else dims  # symbolic or unknown dims: 0
    for init in g.initializer:
        out[init.name] = [int(d) for d in init.dims]
    return out


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _prod(xs: list[int]) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def _node_flops(node: Any, shapes: dict[str, list[int] | None]) -> int | None:
    def shape(i: int, outputs: bool = False) -> list[int] | None:
        names = node.output if outputs else node.input
        return shapes.get(names[i]) if len(names) > i and names[i] else None

    op = node.op_type
    if op == "Conv":
        w, y = shape(1), shape(0, outputs=True)
        if w is None or y is None:
            return None
        return 2 * _prod(y) * _prod(w[1:])  # w: [C_out, C_in/group, kH, kW]
    if op == "ConvTranspose":
        x, w = shape(0), shape(1)
        if x is None or w is None:
            return None
        return 2 * _prod(x) * w[1] * _prod(w[2:])  # w: [C_in, C_out/group, kH, kW]
    if op == "Gemm":
        a, b = shape(0), shape(1)
        if a is None or b is None:
            return None
        m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
        n = b[0] if _attr(node, "transB", 0) else b[1]
        return 2 * m * n * k
    if op == "MatMul":
        a, b, y = shape(0), shape(1), shape(0, outputs=True)
        if a is None or b is None or y is None:
            return None
        k = a[-1] if len(a) >= 1 else 1
        return 2 * _prod(y) * k
    return 0


def count_flops(onnx_path: str | Path, batch: int = 1) -> FlopCount:
    """FLOPs of one ``batch``-sized inference of the ONNX model at ``onnx_path``."""
    import onnx

    model = onnx.load(str(onnx_path))
    _fix_inputs(model, batch)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = _shapes(inferred)
    result = _count(inferred, shapes)
    if result.unresolved:  # ONNX's inference stopped (computed Pad/Reshape shapes): run the graph once
        try:
            shapes.update(_shapes_by_running(model))
            alt = _count(inferred, shapes)
            if len(alt.unresolved) < len(result.unresolved):
                result = alt
        except Exception:  # ORT missing or the graph does not run on zeros: keep the unresolved list
            pass
    return result


def _shapes_by_running(model: Any) -> dict[str, list[int] | None]:
    """Actual shapes of the counted nodes' tensors from one ONNX Runtime run on zero inputs."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    wanted = []
    for node in m.graph.node:
        if node.op_type in COUNTED:
            wanted += [t for t in (*node.input[:2], *node.output[:1]) if t]
    init_names = {t.name for t in m.graph.initializer}
    for name in dict.fromkeys(wanted):
        if name not in known and name not in init_names:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in sess.get_inputs():
        dims = [d if isinstance(d, int) else 1 for d in inp.shape]
        feeds[inp.name] = np.zeros(dims, dtype=np.float32)
    names = [o.name for o in sess.get_outputs()]
    return {n: [int(d) for d in v.shape] for n, v in zip(names, sess.run(names, feeds), strict=True)}


def _count(model: Any, shapes: dict[str, list[int] | None]) -> FlopCount:
    fc = FlopCount()
    for node in model.graph.node:
        if node.op_type not in COUNTED:
            continue
        f = _node_flops(node, shapes)
        if f is None:
            fc.unresolved.append(f"{node.op_type}:{node.name or node.output[0]}")
            continue
        fc.flops += f
        fc.by_op[node.op_type] = fc.by_op.get(node.op_type, 0) + f
    return fc
