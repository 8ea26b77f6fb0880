"""Regenerate ``docs/img/viewer_window.png``: a screenshot of the real ``lus-view`` window (tk backend).

Synthetic data only (the simulator and the shipped demonstration models; never patient data):

1. start ``Xvfb`` on a free display number (``-nolisten tcp``, black root);
2. start an engine on the live simulator that also publishes its frames:
   ``python -m stream.cli --synthetic --publish-frames --seed 3 ...`` on free loopback ports;
3. start ``lus-view --window yes --window-backend tk`` on that display;
4. start an exam over the control socket and score the first zones (``exam_start``, ``zone``, ``freeze``)
   so that the panel shows the zone table;
5. after a few seconds grab the window's rectangle with Pillow (``PIL.ImageGrab.grab(xdisplay=...)``),
   then close everything.

    .venv/bin/python tools/screenshot_viewer.py [--out docs/img/viewer_window.png] [--seconds 3] [--zones 3]

Needs ``Xvfb`` (Debian/Ubuntu: ``apt-get install -y xvfb``), tkinter and Pillow with XCB support;
``xwininfo`` (x11-utils) finds the window's rectangle, else the non-black part of the screen is kept.
Without a window manager the window has no title bar: the picture is the window's content.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from stream.control import request
from stream.view.window import x11_reachable

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_display() -> int:
    for n in range(140, 400):
        if not (Path(f"/tmp/.X11-unix/X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists()):
            return n
    raise SystemExit("screenshot_viewer: no free X display number")


def window_rect(display: str, title: str) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the window titled ``title`` through ``xwininfo``; None when it is not installed."""
    if shutil.which("xwininfo") is None:
        return None
    out = subprocess.run(["xwininfo", "-display", display, "-name", title], capture_output=True, text=True,
                         timeout=10).stdout
    values = {}
    for key in ("Absolute upper-left X", "Absolute upper-left Y", "Width", "Height"):
        m = re.search(rf"{key}:\s+(-?\d+)", out)
        if m is None:
            return None
        values[key] = int(m.group(1))
    return (values["Absolute upper-left X"], values["Absolute upper-left Y"], values["Width"],
            values["Height"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "viewer_window.png")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="how long the viewer runs after the exam steps, before the grab")
    p.add_argument("--zones", type=int, default=3, help="exam zones scored (frozen) before the grab")
    args = p.parse_args(argv)
    if shutil.which("Xvfb") is None:
        print("screenshot_viewer: Xvfb is not installed (apt-get install -y xvfb)", file=sys.stderr)
        return 2
    from PIL import ImageGrab

    n = free_display()
    display = f":{n}"
    env = {**os.environ, "DISPLAY": display, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("WAYLAND_DISPLAY", None)
    procs: list[subprocess.Popen] = []
    try:
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-br"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(xvfb)
        deadline = time.monotonic() + 15
        while not x11_reachable(display)[0]:
            if xvfb.poll() is not None or time.monotonic() > deadline:
                print(f"screenshot_viewer: Xvfb {display} did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        pub, ctrl = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        engine = subprocess.Popen([sys.executable, "-m", "stream.cli", "--synthetic", "--publish-frames",
                                   "--seed", "3", "--seg-every", "4", "--threads", "1", "--pub", pub,
                                   "--ctrl", ctrl], cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        procs.append(engine)
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(ctrl, "status", timeout_ms=1000)["status"]["frames_scored"] > 0:
                    break
            except TimeoutError:
                pass
            if engine.poll() is not None or time.monotonic() > deadline:
                print("screenshot_viewer: the engine did not start", file=sys.stderr)
                return 1
            time.sleep(0.2)
        title = f"lus-view {pub}"
        viewer = subprocess.Popen([sys.executable, "-m", "stream.view.cli", "--connect", pub, "--window",
                                   "yes", "--window-backend", "tk", "--max-fps", "15"], cwd=REPO, env=env)
        procs.append(viewer)
        time.sleep(2.0)  # the viewer subscribes before the exam's messages are published
        request(ctrl, "exam_start", exam_id="synthetic-demo", protocol="soldati12")
        request(ctrl, "zone", zone="RP1")
        for _ in range(args.zones):
            time.sleep(1.5)
            request(ctrl, "freeze")
            request(ctrl, "zone", zone="next")
        time.sleep(args.seconds)
        if viewer.poll() is not None:
            print(f"screenshot_viewer: lus-view exited early ({viewer.returncode})", file=sys.stderr)
            return 1
        rect = window_rect(display, title)
        shot = ImageGrab.grab(xdisplay=display).convert("RGB")
        if rect is not None:
            x, y, w, h = rect
            shot = shot.crop((x, y, x + w, y + h))
        else:
            shot = shot.crop(shot.getbbox())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shot.save(args.out, optimize=True)
        print(f"screenshot_viewer: wrote {args.out} ({shot.width}x{shot.height}) from {display}")
        viewer.send_signal(signal.SIGTERM)
        viewer.wait(20)
        request(ctrl, "stop", timeout_ms=5000)
        engine.wait(30)
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    sys.exit(main())
