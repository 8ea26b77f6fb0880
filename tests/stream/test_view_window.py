"""lus-view's window: it opens on a real X server (Xvfb) with the tkinter backend, quits with status 0 on the
window manager's close request and on q/Escape, and a missing, dead or refusing display is one clear line
(exit 2 with ``--window yes``, a warning and headless output with ``--window auto``), never a crash.

The X server is ``Xvfb`` (skipped when it is not installed). Without a window manager the test does what a
window manager does when the close button is clicked: it sends the ``WM_PROTOCOLS``/``WM_DELETE_WINDOW``
ClientMessage to the viewer's toplevel window (Xlib through ctypes); keys are typed with the XTEST
extension (libXtst), after giving the window the input focus.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.view import window as win
from stream.view.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)
TITLE_PREFIX = b"lus-view "


def _env(display: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    if display is not None:
        env["DISPLAY"] = display
    return env


def _run(env_display: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.view.cli", *args], capture_output=True, text=True,
                          env=_env(env_display), timeout=60)


def _free_display() -> int:
    """A display number with no X socket, no lock file and nothing on its TCP port."""
    for n in range(140, 400):
        if os.path.exists(f"/tmp/.X11-unix/X{n}") or os.path.exists(f"/tmp/.X{n}-lock"):
            continue
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", 6000 + n)) == 0:
                continue
        return n
    raise RuntimeError("no free X display number")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_one_clean_line(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lus-view: ") and "Traceback" not in stderr


class Xvfb:
    """``Xvfb :N -screen 0 1280x1024x24 -nolisten tcp`` on a free display number."""

    def __init__(self) -> None:
        if shutil.which("Xvfb") is None:
            pytest.skip("Xvfb is not installed (apt-get install -y xvfb): no X server to open a window on")
        self.number = _free_display()
        self.display = f":{self.number}"
        cmd = ["Xvfb", self.display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not win.x11_reachable(self.display)[0]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.skip(f"Xvfb {self.display} did not start: {self.proc.stderr.read()[-300:]!r}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def xvfb():
    server = Xvfb()
    yield server
    server.stop()


# ---------------------------------------------------------------------------- a tiny Xlib client (ctypes)
class _ClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


CLIENT_MESSAGE, NO_EVENT_MASK, REVERT_TO_PARENT, CURRENT_TIME = 33, 0, 2, 0


class X11:
    """What a window manager and a keyboard would do, for tests: find a window, ask it to close, type."""

    def __init__(self, display: str) -> None:
        name = ctypes.util.find_library("X11")
        if name is None:
            pytest.skip("libX11 not found: cannot talk to the X server")
        self.x = ctypes.CDLL(name)
        x = self.x
        x.XOpenDisplay.restype = ctypes.c_void_p
        x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x.XDefaultRootWindow.restype = ctypes.c_ulong
        x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        ulong_p = ctypes.POINTER(ctypes.c_ulong)
        x.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ulong_p, ulong_p, ctypes.POINTER(ulong_p),
                                 ctypes.POINTER(ctypes.c_uint)]
        x.XFetchName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_char_p)]
        x.XFree.argtypes = [ctypes.c_void_p]
        x.XInternAtom.restype = ctypes.c_ulong
        x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long,
                                 ctypes.POINTER(_XEvent)]
        x.XFlush.argtypes = [ctypes.c_void_p]
        x.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x.XCloseDisplay.argtypes = [ctypes.c_void_p]
        x.XSetInputFocus.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_ulong]
        x.XStringToKeysym.restype = ctypes.c_ulong
        x.XStringToKeysym.argtypes = [ctypes.c_char_p]
        x.XKeysymToKeycode.restype = ctypes.c_ubyte
        x.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        self.dpy = x.XOpenDisplay(display.encode())
        assert self.dpy, f"cannot open {display}"
        self.root = x.XDefaultRootWindow(self.dpy)

    def windows(self, parent: int | None = None) -> list[tuple[int, bytes]]:
        """(window, WM_NAME) of every named window under ``parent`` (default: the root), depth first."""
        x, parent = self.x, self.root if parent is None else parent
        root, par = ctypes.c_ulong(), ctypes.c_ulong()
        children, n = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        if not x.XQueryTree(self.dpy, parent, ctypes.byref(root), ctypes.byref(par), ctypes.byref(children),
                            ctypes.byref(n)):
            return []
        ids = [children[i] for i in range(n.value)]
        if children:
            x.XFree(children)
        found = []
        for w in ids:
            name = ctypes.c_char_p()
            if x.XFetchName(self.dpy, w, ctypes.byref(name)) and name.value is not None:
                found.append((w, name.value))
                x.XFree(name)
            found.extend(self.windows(w))
        return found

    def wait_window(self, prefix: bytes, proc: subprocess.Popen, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [w for w, name in self.windows() if name.startswith(prefix)]
            if hits:
                return hits[0]
            assert proc.poll() is None, f"the viewer exited ({proc.returncode}) before its window appeared"
            time.sleep(0.1)
        raise AssertionError(f"no window named {prefix!r} within {timeout} s")

    def close_request(self, window: int) -> None:
        """The window manager's close button: WM_PROTOCOLS ClientMessage carrying WM_DELETE_WINDOW."""
        x = self.x
        ev = _XEvent()
        ev.xclient.type = CLIENT_MESSAGE
        ev.xclient.window = window
        ev.xclient.message_type = x.XInternAtom(self.dpy, b"WM_PROTOCOLS", 0)
        ev.xclient.format = 32
        ev.xclient.data[0] = x.XInternAtom(self.dpy, b"WM_DELETE_WINDOW", 0)
        ev.xclient.data[1] = CURRENT_TIME
        assert x.XSendEvent(self.dpy, window, 0, NO_EVENT_MASK, ctypes.byref(ev))
        x.XSync(self.dpy, 0)

    def type_key(self, window: int, keysym: str) -> None:
        """Focus ``window`` (a window manager's job) and press and release a key through XTEST."""
        name = ctypes.util.find_library("Xtst")
        if name is None:
            pytest.skip("libXtst not found: cannot type keys")
        xtst = ctypes.CDLL(name)
        xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
        x = self.x
        x.XSetInputFocus(self.dpy, window, REVERT_TO_PARENT, CURRENT_TIME)
        x.XSync(self.dpy, 0)
        code = x.XKeysymToKeycode(self.dpy, x.XStringToKeysym(keysym.encode()))
        assert code, keysym
        xtst.XTestFakeKeyEvent(self.dpy, code, 1, 0)
        xtst.XTestFakeKeyEvent(self.dpy, code, 0, 0)
        x.XSync(self.dpy, 0)

    def close(self) -> None:
        self.x.XCloseDisplay(self.dpy)


def _start_viewer(display: str, *extra: str) -> subprocess.Popen[str]:
    """lus-view with the tk window on ``display``, local synthetic pictures, no engine (a closed port)."""
    cmd = [sys.executable, "-m", "stream.view.cli", "--window", "yes", "--window-backend", "tk",
           "--frames-from", "synthetic:2", "--connect", f"tcp://127.0.0.1:{_free_port()}", "--max-fps", "10",
           "--min-height", "300", "--duration", "60", *extra]
    return subprocess.Popen(cmd, env=_env(display), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------- the window on Xvfb
@pytest.mark.skipif(not win.tk_available(), reason="no tkinter in this Python (apt install python3-tk)")
def test_close_button_quits_with_status_0(xvfb: Xvfb) -> None:
    """The close request quits: exit 0 within seconds, and the window is gone (not re-created)."""
    proc = _start_viewer(xvfb.display)
    x11 = X11(xvfb.display)
    try:
        window = x11.wait_window(TITLE_PREFIX, proc)
        time.sleep(0.5)  # a few frames drawn
        assert proc.poll() is None, proc.stderr.read()
        x11.close_request(window)
        t0 = time.monotonic()
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t0
        stderr = proc.stderr.read()
        assert rc == 0, stderr
        assert took < 3.0, f"took {took:.1f} s to quit"
        assert "Traceback" not in stderr
        assert not [w for w, name in x11.windows() if name.startswith(TITLE_PREFIX)]
    finally:
        _stop(proc)
        x11.close()


@pytest.mark.skipif(not win.tk_available(), reason="no tkinter in this Python (apt install python3-tk)")
@pytest.mark.parametrize("key", ["q", "Escape"])
def test_quit_keys_quit_with_status_0(xvfb: Xvfb, key: str) -> None:
    proc = _start_viewer(xvfb.display)
    x11 = X11(xvfb.display)
    try:
        window = x11.wait_window(TITLE_PREFIX, proc)
        time.sleep(0.3)
        x11.type_key(window, key)
        rc = proc.wait(timeout=10)
        stderr = proc.stderr.read()
        assert rc == 0 and "Traceback" not in stderr, stderr
    finally:
        _stop(proc)
        x11.close()


@pytest.mark.skipif(not win.tk_available(), reason="no tkinter in this Python (apt install python3-tk)")
def test_tk_window_shows_the_canvas_pixels(xvfb: Xvfb) -> None:
    """The PPM path is colour-correct: a BGR canvas shown in a TkWindow reads back as the same pixels."""
    image_grab = pytest.importorskip("PIL.ImageGrab")
    if not pytest.importorskip("PIL.features").check("xcb"):
        pytest.skip("this Pillow has no XCB support: cannot grab the X display")
    code = (
        "import sys, time, numpy as np\n"
        "from stream.view.window import TkWindow\n"
        "w = TkWindow('lus-view pixels')\n"
        "c = np.zeros((120, 160, 3), np.uint8)\n"
        "c[:, :80] = (255, 0, 0)\n"   # blue in BGR
        "c[:, 80:] = (0, 0, 255)\n"   # red in BGR
        "t = time.monotonic()\n"
        "while time.monotonic() - t < 30 and w.show(c):\n"
        "    time.sleep(0.02)\n"
        "w.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=_env(xvfb.display), stderr=subprocess.PIPE,
                            text=True)
    x11 = X11(xvfb.display)
    try:
        window = x11.wait_window(b"lus-view pixels", proc)
        time.sleep(0.5)
        shot = np.asarray(image_grab.grab(xdisplay=xvfb.display).convert("RGB"))
        blue = np.all(shot == (0, 0, 255), axis=2)
        red = np.all(shot == (255, 0, 0), axis=2)
        assert blue.sum() >= 80 * 120 and red.sum() >= 80 * 120, (blue.sum(), red.sum())
        assert np.nonzero(blue)[1].max() < np.nonzero(red)[1].min()  # blue left of red, as drawn
        x11.close_request(window)
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        _stop(proc)
        x11.close()


# ---------------------------------------------------------------------------- no, dead or refusing displays
def _usable(backend: str) -> bool:
    try:
        win.choose_backend(backend)
    except win.WindowError:
        return False
    return True


def test_window_without_a_display_is_refused_clearly() -> None:
    out = _run(None, "--window", "yes", "--duration", "1")
    assert out.returncode == 2
    assert "no display" in out.stderr and "--out" in out.stderr
    _assert_one_clean_line(out.stderr)


def test_dead_display_is_one_line_and_exit_2() -> None:
    """DISPLAY names a display no X server serves: the viewer's own line, not a toolkit abort (Qt: 134)."""
    n = _free_display()
    backends = [b for b in ("auto", "tk", "opencv") if _usable(b)]
    if not backends:
        pytest.skip("no window toolkit here: neither tkinter nor an OpenCV with a GUI")
    for backend in backends:
        out = _run(f":{n}", "--window", "yes", "--window-backend", backend, "--duration", "1")
        assert out.returncode == 2, (out.returncode, out.stderr)
        _assert_one_clean_line(out.stderr)
        line = out.stderr.strip()
        assert f"DISPLAY=':{n}'" in line and "start an X server" in line and "ssh -X" in line
        assert "--out FILE.mp4" in line and "--snapshot-every N DIR" in line


def test_dead_display_with_window_auto_falls_back_to_headless(tmp_path: Path) -> None:
    if not _usable("auto"):
        pytest.skip("no window toolkit here: neither tkinter nor an OpenCV with a GUI")
    n = _free_display()
    snaps = tmp_path / "snaps"
    out = _run(f":{n}", "--window", "auto", "--frames-from", "synthetic", "--connect",
               f"tcp://127.0.0.1:{_free_port()}", "--snapshot-every", "2", str(snaps), "--duration", "1.5",
               "--min-height", "240")
    assert out.returncode == 0, out.stderr
    _assert_one_clean_line(out.stderr)
    assert f"DISPLAY=':{n}'" in out.stderr and "Continuing without a window" in out.stderr
    assert list(snaps.glob("*.png"))  # the headless outputs still work


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install -y xvfb)")
@pytest.mark.skipif(not win.tk_available(), reason="no tkinter in this Python (apt install python3-tk)")
def test_stale_display_socket_of_a_killed_server_is_refused() -> None:
    """An X server killed with SIGKILL leaves /tmp/.X11-unix/XN behind: a stale DISPLAY, not a hang."""
    server = Xvfb()
    sock, lock = Path(f"/tmp/.X11-unix/X{server.number}"), Path(f"/tmp/.X{server.number}-lock")
    try:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        if not sock.exists():
            pytest.skip("this Xvfb left no socket file behind")
        out = _run(server.display, "--window", "yes", "--duration", "1")
        assert out.returncode == 2, out.stderr
        _assert_one_clean_line(out.stderr)
        assert "stale" in out.stderr and f"DISPLAY='{server.display}'" in out.stderr
    finally:
        server.stop()
        for path in (sock, lock):
            path.unlink(missing_ok=True)


@pytest.mark.skipif(not win.tk_available(), reason="no tkinter in this Python (apt install python3-tk)")
def test_display_that_refuses_the_toolkit_is_caught() -> None:
    """Something accepts the connection but is no X server: the socket check passes, Tk refuses
    (tkinter.TclError), and that too is one line and exit 2 (``--window auto``: a warning, exit 0)."""
    n = _free_display()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 6000 + n))
    listener.listen(8)
    listener.settimeout(0.2)
    done = threading.Event()

    def hang_up() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        out = _run(f"127.0.0.1:{n}", "--window", "yes", "--window-backend", "tk", "--duration", "1")
        assert out.returncode == 2, out.stderr
        _assert_one_clean_line(out.stderr)
        assert f"DISPLAY='127.0.0.1:{n}'" in out.stderr and "ssh -X" in out.stderr
        auto = _run(f"127.0.0.1:{n}", "--window", "auto", "--duration", "0.5", "--print")
        assert auto.returncode == 0 and "Continuing without a window" in auto.stderr, auto.stderr
    finally:
        done.set()
        thread.join(2)
        listener.close()


# ---------------------------------------------------------------------------- backends
def test_window_with_a_headless_opencv_names_the_fix() -> None:
    """The headless-OpenCV advice only when the OpenCV backend is forced; auto picks tk instead."""
    if win.opencv_gui() is not None:
        pytest.skip(f"this OpenCV build has a GUI ({win.opencv_gui()})")
    out = _run(":99", "--window", "yes", "--window-backend", "opencv", "--duration", "1")
    assert out.returncode == 2
    assert "opencv-python-headless" in out.stderr and "--window-backend tk" in out.stderr
    assert "python3-tk" in out.stderr
    _assert_one_clean_line(out.stderr)
    if win.tk_available():
        assert win.choose_backend("auto") == "tk"
        auto = _run(f":{_free_display()}", "--window", "yes", "--duration", "1")
        assert auto.returncode == 2 and "opencv-python-headless" not in auto.stderr, auto.stderr


def test_backend_choice_and_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(win, "tk_available", lambda: False)
    monkeypatch.setattr(win, "opencv_gui", lambda: None)
    for requested, needle in (("auto", "no window toolkit"), ("tk", "no tkinter"), ("opencv", "no GUI")):
        with pytest.raises(win.WindowError, match=needle) as err:
            win.choose_backend(requested)
        assert "apt install python3-tk" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setattr(win, "opencv_gui", lambda: "GTK3")
    assert win.choose_backend("auto") == "opencv"
    monkeypatch.setattr(win, "tk_available", lambda: True)
    assert win.choose_backend("auto") == "tk" and win.choose_backend("opencv") == "opencv"


def test_opencv_window_quits_on_close_button_and_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """highgui: after waitKey, WND_PROP_VISIBLE < 1 means the close button was used → closed for good
    (the next frame must not re-create the window); q and Escape quit too."""
    calls: list[str] = []
    state = {"visible": 1.0, "key": -1}
    monkeypatch.setattr(cv2, "namedWindow", lambda name, flags=0: calls.append("named"))
    monkeypatch.setattr(cv2, "imshow", lambda name, img: calls.append("imshow"))
    monkeypatch.setattr(cv2, "waitKey", lambda delay=0: state["key"])
    monkeypatch.setattr(cv2, "getWindowProperty", lambda name, prop: state["visible"])
    monkeypatch.setattr(cv2, "destroyWindow", lambda name: calls.append("destroy"))
    canvas = np.zeros((10, 10, 3), np.uint8)
    w = win.OpenCVWindow("lus-view t")
    assert w.pump() and w.show(canvas) and w.show(canvas)
    state["visible"] = 0.0  # the user clicked the close button
    assert not w.show(canvas)
    n_imshow = calls.count("imshow")
    assert not w.show(canvas) and not w.pump() and calls.count("imshow") == n_imshow  # stays closed
    w.close()
    assert calls[-1] == "destroy"
    for key in (ord("q"), 27):
        state.update(visible=1.0, key=key)
        w = win.OpenCVWindow("lus-view t")
        assert not w.show(canvas)


def test_ppm_bytes_is_rgb() -> None:
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[0, 0] = (255, 0, 0)
    data = win.ppm_bytes(bgr)
    assert data.startswith(b"P6 3 2 255\n") and data[len(b"P6 3 2 255\n"):][:3] == bytes((0, 0, 255))


def test_display_parsing_and_check() -> None:
    assert win.parse_x11_display(":0") == ("", 0)
    assert win.parse_x11_display(":12.1") == ("", 12)
    assert win.parse_x11_display("localhost:10.0") == ("localhost", 10)
    assert win.parse_x11_display("unix:3") == ("unix", 3)
    assert win.parse_x11_display("tcp/example.org:2") == ("example.org", 2)
    assert win.parse_x11_display("[::1]:4") == ("::1", 4)
    assert win.parse_x11_display("nonsense") is None
    if sys.platform.startswith("linux"):
        assert win.check_display("tk", env={}).state == "none"
        assert win.check_display("tk", env={"WAYLAND_DISPLAY": "wayland-0"}).state == "none"
        assert win.check_display("opencv", env={"WAYLAND_DISPLAY": "wayland-0"}).ok
        n = _free_display()
        dead = win.check_display("tk", env={"DISPLAY": f":{n}"})
        assert dead.state == "dead" and f"DISPLAY=':{n}'" in dead.message()


def test_help_lists_the_window_keys_and_backends() -> None:
    text = build_parser().format_help()
    for needle in ("q, Escape", "close button", "exit status 0", "--window-backend", "tk", "opencv",
                   "python3-tk"):
        assert needle in text, needle
