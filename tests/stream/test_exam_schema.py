"""The exam message schema belongs to stream.wire (zone tables in the leaf stream.exam_schema): no import
cycle between stream.wire and stream.exam, and one validator checks fields and totals."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from stream import exam_schema, wire

REPO = Path(__file__).resolve().parents[2]


def _stream_imports(path: Path) -> set[str]:
    """Every ``stream.*`` module a file imports, at any level (top or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("stream")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stream"):
            found.add(node.module)
            if node.module == "stream":
                found |= {f"stream.{a.name}" for a in node.names}
    return found


def test_wire_never_imports_exam_and_the_schema_module_is_a_leaf() -> None:
    assert "stream.exam" not in _stream_imports(REPO / "stream" / "wire.py")
    assert _stream_imports(REPO / "stream" / "exam_schema.py") == set()


def test_wire_works_with_stream_exam_blocked() -> None:
    """In a fresh interpreter with ``stream.exam`` made unimportable, wire validates exam messages."""
    code = (
        "import sys\n"
        "sys.modules['stream.exam'] = None  # any 'import stream.exam' now raises ImportError\n"
        "import stream.wire as wire\n"
        "msg, _ = wire.example('exam')\n"
        "wire.validate('exam', msg)\n"
        "bad = dict(msg, partial_total=3)\n"
        "try:\n"
        "    wire.validate('exam', bad)\n"
        "except wire.WireError as err:\n"
        "    assert 'partial_total' in str(err), err\n"
        "else:\n"
        "    raise SystemExit('totals not checked')\n"
        "assert sys.modules['stream.exam'] is None\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_exam_reexports_the_schema_from_wire() -> None:
    from stream import exam

    assert exam.EXAM_REQUIRED is wire.EXAM_REQUIRED and exam.EXAM_OPTIONAL is wire.EXAM_OPTIONAL
    assert exam.PROTOCOLS is exam_schema.PROTOCOLS
    assert wire.SCHEMAS["exam"] == (wire.EXAM_REQUIRED, wire.EXAM_OPTIONAL)


def test_wire_validate_checks_exam_totals() -> None:
    from stream.exam import ExamSession

    s = ExamSession()
    s.start("t", protocol="blue6")
    s.set_zone("L1")
    s.observe_video({**wire.header("t", 1, 1, 1), "probs": [0.1, 0.1, 0.7, 0.1], "score": 2, "frames": 1,
                     "clip": 0})
    s.freeze()
    msg = s.message("t")
    wire.validate("exam", msg)
    assert msg["protocol"] == "blue6" and msg["max_total"] == 18 and msg["partial_total"] == 2
    with pytest.raises(wire.WireError, match=r"exam\.total"):
        wire.validate("exam", dict(msg, total=2))  # 1 of 6 zones scored: no total yet
    with pytest.raises(wire.WireError, match=r"exam\.protocol"):
        wire.validate("exam", dict(msg, protocol="blue7"))


def test_protocol_tables() -> None:
    assert {k: exam_schema.max_total(k) for k in exam_schema.PROTOCOLS} == {
        "soldati14": 42, "soldati12": 36, "blue6": 18}
    assert [exam_schema.protocol_for(n) for n in (14, 12, 6)] == ["soldati14", "soldati12", "blue6"]
