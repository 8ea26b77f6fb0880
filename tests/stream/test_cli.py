"""lus-stream's command line: every option documented with its default, subcommand dispatch, clear
refusals (no source, non-loopback bind), and the demo end to end in a real subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engines import testing
from stream.cli import _window, build_parser, main

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ["--device", "--clip", "--folder", "--dicom", "--url", "--synthetic", "--demo", "--loop",
           "--as-fast-as-possible", "--engines", "--backend", "--pub", "--ctrl", "--record", "--seg-every",
           "--mc-samples", "--window", "--aggregator", "--max-frames", "--fps", "--print",
           "--store-patient-id", "--exam-demo"]


def test_help_explains_every_option_with_its_default() -> None:
    text = build_parser().format_help()
    for opt in OPTIONS:
        assert opt in text, opt
    for default in ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556", "uninorm", "(default: auto)"):
        assert default in text
    assert "(default: None)" not in text and "--exam-dwell-s" not in text  # a hidden test/demo knob
    from stream.cli import _HelpFormatter

    fmt = _HelpFormatter("lus-stream")
    sources = {"--device", "--clip", "--folder", "--dicom", "--url", "--demo", "-h"}
    for action in build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help"
        if not sources & set(action.option_strings):
            assert "default" in fmt._get_help_string(action), f"{action.option_strings} names no default"


def test_window_parsing() -> None:
    import argparse

    assert _window("90") == (90, None) and _window("2.5s") == (None, 2.5)
    for bad in ("0", "-3", "xs", "3m"):
        with pytest.raises(argparse.ArgumentTypeError, match="--window"):
            _window(bad)


def test_no_source_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--print"])
    assert exc.value.code == 2
    assert "one of the arguments --device --clip" in capsys.readouterr().err


def test_non_loopback_pub_is_refused(tmp_path: Path, capsys) -> None:
    code = main(["--synthetic", "--engines", str(tmp_path), "--no-scoring", "--pub", "tcp://0.0.0.0:5999",
                 "--ctrl", "none"])
    assert code == 2
    assert "refusing to bind" in capsys.readouterr().err


def test_subcommands_dispatch(tmp_path: Path, capsys) -> None:
    assert main(["keygen", str(tmp_path / "keys")]) == 0
    assert (tmp_path / "keys").is_dir() and any((tmp_path / "keys").rglob("*.key"))
    assert main(["run", "--synthetic", "--pub", "tcp://0.0.0.0:1"]) == 2  # `run` is the default subcommand
    assert "refusing to bind" in capsys.readouterr().err


def _free() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.timeout(90)
def test_quick_demo_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the tiny test models are exported with torch")
    testing.make_tiny_onnx(tmp_path / "frame", "frame", size_hw=(32, 32), torch_export=False)
    out = subprocess.run(
        [sys.executable, "-m", "stream.demo", "--seconds", "7", "--pub", _free(), "--ctrl", _free(),
         "--quick", "--", "--engines", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=80,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("[")]
    assert len(lines) >= 5 and any("frame score" in ln and "clip score" in ln for ln in lines), out.stdout
    assert any("OFF: segmentation" in ln for ln in lines)  # no segmentation model: the engine says so
    assert "0 invalid; engine exit code 0" in out.stdout


def test_triton_url_without_the_triton_backend_is_refused(capsys) -> None:
    code = main(["--synthetic", "--triton-url", "127.0.0.1:8001", "--ctrl", "none"])
    assert code == 2
    assert "--triton-url 127.0.0.1:8001 needs --backend triton" in capsys.readouterr().err
