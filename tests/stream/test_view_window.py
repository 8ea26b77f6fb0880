"""lus-view asked for a window it cannot open says why and how to fix it, instead of crashing."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import pytest

from stream.view.cli import display_available


def _run(env_display: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if env_display is not None:
        env["DISPLAY"] = env_display
    return subprocess.run([sys.executable, "-m", "stream.view.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def _opencv_has_gui() -> bool:
    return "GTK" in cv2.getBuildInformation().split("GUI:")[-1][:200] or display_available()


@pytest.mark.skipif(_opencv_has_gui(), reason="this OpenCV build has a GUI backend")
def test_window_with_a_headless_opencv_names_the_fix() -> None:
    out = _run(":99", "--window", "yes", "--duration", "1")
    assert out.returncode == 2
    assert "opencv-python-headless" in out.stderr and "pip install opencv-python" in out.stderr
    assert "Traceback" not in out.stderr


def test_window_without_a_display_is_refused_clearly() -> None:
    out = _run(None, "--window", "yes", "--duration", "1")
    assert out.returncode == 2
    assert "no display" in out.stderr and "--out" in out.stderr
    assert "Traceback" not in out.stderr
