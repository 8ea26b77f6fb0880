"""On-screen window for ``lus-view``: a tkinter backend (standard library) and an OpenCV highgui backend.

The runtime installs ``opencv-python-headless`` (no GUI libraries), so the default window is drawn with the
standard library's tkinter: the BGR overlay canvas becomes a PPM image (``P6`` header + RGB bytes) that a
Tk ``PhotoImage`` reads directly, no Pillow needed. The OpenCV highgui backend is kept for installs whose
OpenCV has a GUI (``opencv-python``). Both sit behind :class:`Window`:

* :meth:`Window.show` draws a canvas and handles pending events, :meth:`Window.pump` only handles events;
  both return False once the user quit — the close button (the window manager's ``WM_DELETE_WINDOW``),
  ``q`` or ``Escape`` — after which the window stays closed (it is never re-created by the next frame);
* :meth:`Window.close` destroys the window (idempotent).

Before any toolkit call :func:`check_display` checks cheaply that the X display in ``DISPLAY`` answers
(``[host]:N[.S]`` → the unix socket ``/tmp/.X11-unix/XN``, its Linux abstract twin, or TCP ``6000+N``):
with a dead or stale ``DISPLAY`` some toolkits abort the process (Qt: SIGABRT, exit 134) instead of
raising. The toolkit's own refusal (``tkinter.TclError``) is still caught and becomes a
:class:`WindowError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

BACKENDS = ("auto", "tk", "opencv")
KEYS = (  # what the window reacts to (``lus-view --help``, docs/viewer.md, README)
    ("q, Escape", "quit (exit status 0)"),
    ("close button", "quit (exit status 0): the window manager's close request, WM_DELETE_WINDOW"),
)
HEADLESS_FIX = "use --out FILE.mp4 or --snapshot-every N DIR (or --print)"

HEADLESS_OPENCV = (
    "lus-view: --window-backend opencv, but this OpenCV build has no GUI (the runtime installs "
    "opencv-python-headless). Use the default tk backend (--window-backend tk; standard library tkinter, "
    "on Debian/Ubuntu: apt install python3-tk), or replace OpenCV: pip uninstall -y "
    "opencv-python-headless && pip install opencv-python (pip check then reports lus-stream's "
    f"opencv-python-headless requirement as missing). Meanwhile {HEADLESS_FIX}."
)
NO_TK = (
    "lus-view: --window-backend tk, but this Python has no tkinter (on Debian/Ubuntu: apt install "
    f"python3-tk; other systems: a Python built with Tk). Meanwhile {HEADLESS_FIX}."
)
NO_TOOLKIT = (
    "lus-view: no window toolkit: this Python has no tkinter (on Debian/Ubuntu: apt install python3-tk) "
    f"and this OpenCV build has no GUI (opencv-python-headless). Meanwhile {HEADLESS_FIX}."
)


class WindowError(RuntimeError):
    """No window can be opened here; the message (one line) says why and what to do instead."""


class Window(Protocol):
    """What the viewer's loop needs from a window backend."""

    backend: str

    def show(self, canvas: np.ndarray) -> bool:
        """Draw a BGR canvas and handle pending events; False once the user quit."""
        ...

    def pump(self) -> bool:
        """Handle pending events only (keeps the window responsive between renders); False once quit."""
        ...

    def close(self) -> None:
        """Destroy the window (idempotent)."""
        ...


# ---------------------------------------------------------------------------- is there a display?
@dataclass(frozen=True)
class DisplayCheck:
    """Result of :func:`check_display`: ``state`` is ``ok``, ``none`` (no display at all) or ``dead``."""

    state: str
    display: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def message(self) -> str:
        """One line naming the DISPLAY value and the fixes."""
        if self.state == "none":
            return ("lus-view: --window yes but there is no display (DISPLAY is not set): start an X "
                    f"server or connect with ssh -X, or {HEADLESS_FIX}")
        return (f"lus-view: cannot open a window: no X server answers on DISPLAY={self.display!r} "
                f"({self.detail}); start an X server (or fix DISPLAY), connect with ssh -X, or "
                f"{HEADLESS_FIX}")


def parse_x11_display(display: str) -> tuple[str, int] | None:
    """``[protocol/][host]:N[.S]`` → (host, N); None when it is not in that form."""
    host, sep, rest = display.rpartition(":")
    if not sep:
        return None
    number = rest.split(".", 1)[0]
    if not number.isdigit():
        return None
    host = host.split("/", 1)[1] if "/" in host and not host.startswith("/") else host
    return host.strip("[]"), int(number)


def _connects(family: int, address: str | bytes | tuple[str, int], timeout: float) -> str | None:
    """None when a stream socket connects to ``address``, else the error's text."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
        return None
    except OSError as err:
        return err.strerror or type(err).__name__


def x11_reachable(display: str, timeout: float = 0.5) -> tuple[bool, str]:
    """Whether an X server accepts connections for ``display`` (connects and hangs up, no X protocol).

    Returns (reachable, where: the socket that answered, or why none did). A form this does not understand
    counts as reachable: the toolkit then decides (and its error is caught)."""
    if display.startswith("/"):  # a socket path, e.g. macOS launchd's .../org.xquartz:0
        if not hasattr(socket, "AF_UNIX"):
            return True, display
        err = _connects(socket.AF_UNIX, display, timeout)
        return err is None, display if err is None else f"{display}: {err}"
    parsed = parse_x11_display(display)
    if parsed is None:
        return True, display
    host, n = parsed
    why = ""
    if host in ("", "unix") and hasattr(socket, "AF_UNIX"):
        path = f"/tmp/.X11-unix/X{n}"
        if _connects(socket.AF_UNIX, path, timeout) is None:
            return True, path
        if sys.platform.startswith("linux") and \
                _connects(socket.AF_UNIX, b"\0" + path.encode(), timeout) is None:
            return True, "@" + path  # the abstract socket Xorg and Xvfb also listen on
        why = f"{path} does not exist" if not os.path.exists(path) else \
            f"{path} refuses connections: a stale socket"
        if host == "unix":
            return False, why
    tcp_host = host or "localhost"  # Xlib falls back to TCP for ":N" too
    port = 6000 + n
    addresses = _tcp_addresses(tcp_host, port)
    if not addresses:
        return False, why or f"unknown host {tcp_host!r}"
    family, _, _, _, address = addresses[0]
    err = _connects(family, address, timeout)
    if err is None:
        return True, f"{tcp_host}:{port}"
    return False, why or f"{tcp_host}:{port}: {err}"


def _tcp_addresses(host: str, port: int) -> list:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []


def check_display(backend: str = "tk", env: dict[str, str] | None = None, timeout: float = 0.5
                  ) -> DisplayCheck:
    """Whether ``backend`` can reach a display, without loading any GUI toolkit.

    Windows and macOS have a native display (tkinter and OpenCV need no X server there). Elsewhere
    ``DISPLAY`` must name an X server that accepts connections; Wayland alone (no XWayland, so no
    ``DISPLAY``) is a display only for the OpenCV backend, whose GUI build may speak Wayland."""
    environ: Mapping[str, str] = os.environ if env is None else env
    display = environ.get("DISPLAY") or None
    if sys.platform in ("win32", "darwin"):  # native windows (Tk on macOS is Aqua, not XQuartz)
        return DisplayCheck("ok", display)
    if display is None:
        if backend == "opencv" and environ.get("WAYLAND_DISPLAY"):
            return DisplayCheck("ok", environ["WAYLAND_DISPLAY"])
        return DisplayCheck("none")
    reachable, detail = x11_reachable(display, timeout)
    return DisplayCheck("ok" if reachable else "dead", display, detail)


# ---------------------------------------------------------------------------- which toolkit
def tk_available() -> bool:
    """Whether the standard library's tkinter (and its C part, ``_tkinter``) can be imported."""
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return False
    return True


def opencv_gui() -> str | None:
    """The GUI backend of the installed OpenCV build (e.g. ``GTK3``, ``QT5``), None for a headless build."""
    for line in cv2.getBuildInformation().splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key.strip() == "GUI":
            value = value.strip()
            return None if value.upper() in ("", "NONE", "NO") else value
    return None


def choose_backend(requested: str) -> str:
    """``tk`` or ``opencv`` for ``--window-backend`` ``auto|tk|opencv``; raises :class:`WindowError`.

    ``auto``: tk when tkinter imports, else OpenCV highgui when the installed OpenCV has a GUI."""
    if requested not in BACKENDS:
        raise ValueError(f"window backend must be one of {BACKENDS}, not {requested!r}")
    if requested in ("auto", "tk"):
        if tk_available():
            return "tk"
        if requested == "tk":
            raise WindowError(NO_TK)
    if opencv_gui() is not None:
        return "opencv"
    raise WindowError(HEADLESS_OPENCV if requested == "opencv" else NO_TOOLKIT)


def open_window(backend: str, title: str) -> Window:
    """A window of ``backend`` (``tk`` or ``opencv``); :class:`WindowError` when the toolkit refuses."""
    if backend == "tk":
        return TkWindow(title)
    if backend == "opencv":
        return OpenCVWindow(title)
    raise ValueError(f"unknown window backend {backend!r}")


# ---------------------------------------------------------------------------- tkinter
def ppm_bytes(canvas: np.ndarray) -> bytes:
    """A BGR (or gray) uint8 image as binary PPM (``P6``), the format Tk's PhotoImage reads natively."""
    if canvas.ndim == 2:
        rgb = cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB)
    else:
        rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    return b"P6 %d %d 255\n" % (w, h) + np.ascontiguousarray(rgb, np.uint8).tobytes()


class TkWindow:
    """The overlay in a Tk toplevel: a Label showing a PhotoImage that each :meth:`show` reloads."""

    backend = "tk"

    def __init__(self, title: str) -> None:
        import tkinter

        self._tk = tkinter
        try:
            root = tkinter.Tk(className="lus-view")
        except tkinter.TclError as err:
            display = os.environ.get("DISPLAY")
            raise WindowError(f"lus-view: cannot open a window on DISPLAY={display!r}: {err}; start an X "
                              f"server (or fix DISPLAY), connect with ssh -X, or {HEADLESS_FIX}") from None
        self._root: tkinter.Tk | None = root
        root.title(title)
        root.configure(background="black")
        root.withdraw()  # mapped at the first picture, at its size
        root.protocol("WM_DELETE_WINDOW", self._quit)
        for sequence in ("<KeyPress-q>", "<KeyPress-Q>", "<KeyPress-Escape>"):
            root.bind(sequence, self._quit)
        self._label = tkinter.Label(root, borderwidth=0, highlightthickness=0, background="black")
        self._label.pack()
        self._photo: tkinter.PhotoImage | None = None
        self.open = True
        self.frames = 0

    def _quit(self, _event: object = None) -> None:
        self.open = False

    def show(self, canvas: np.ndarray) -> bool:
        if not self.open or self._root is None:
            return False
        data = ppm_bytes(canvas)
        try:
            if self._photo is None:
                self._photo = self._tk.PhotoImage(master=self._root, data=data, format="PPM")
                self._label.configure(image=self._photo)
                self._root.deiconify()
            else:
                self._photo.configure(data=data, format="PPM")  # same image object: resizes with the data
            self.frames += 1
        except self._tk.TclError:  # the application was destroyed under us
            self.open = False
            return False
        return self.pump()

    def pump(self) -> bool:
        if self.open and self._root is not None:
            try:
                self._root.update()
            except self._tk.TclError:
                self.open = False
        return self.open

    def close(self) -> None:
        self.open = False
        root, self._root = self._root, None
        if root is not None:
            with contextlib.suppress(self._tk.TclError):
                root.destroy()
        self._photo = None


# ---------------------------------------------------------------------------- OpenCV highgui
class OpenCVWindow:
    """The overlay in an OpenCV highgui window (needs an OpenCV build with a GUI)."""

    backend = "opencv"

    def __init__(self, title: str) -> None:
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        except cv2.error:
            raise WindowError(HEADLESS_OPENCV) from None
        self.open = True
        self._shown = False
        self.frames = 0

    def show(self, canvas: np.ndarray) -> bool:
        if not self.open:
            return False
        try:
            cv2.imshow(self.title, canvas)
        except cv2.error:
            self.open = False
            return False
        self._shown = True
        self.frames += 1
        return self.pump()

    def pump(self) -> bool:
        if not self.open or not self._shown:
            return self.open
        try:
            key = cv2.waitKey(1)
            quit_key = key != -1 and (key & 0xFF) in (ord("q"), ord("Q"), 27)
            # the close button destroys (GTK) or hides (Qt) the window; imshow would re-create it
            if quit_key or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                self.open = False
        except cv2.error:
            self.open = False
        return self.open

    def close(self) -> None:
        self.open = False
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)

