"""Banners span the whole overlay (picture + panel), wrap instead of being cut, are drawn without an
outline; a stale or disconnected view shows the engine's last known state as such, dim, not as live."""

from __future__ import annotations

import time

import cv2
import numpy as np

from stream import wire
from stream.view import overlay, sample
from stream.view.overlay import Banner, Scene, Style, render
from stream.view.subscriber import StreamView

LONG = ("DISCONNECTED from tcp://engine-bedside-7.icu.hospital.example.org:5555: engine stopped or "
        "unreachable")
CANVAS_BG = 28  # the panel's background value


def _drawn_lines(layout: overlay.BannerLayout) -> list[tuple[Banner, list[str]]]:
    return [(b, lines) for b, _, _, lines in layout.rows]


def test_long_disconnected_banner_is_never_cut_on_a_480_px_picture() -> None:
    image = np.zeros((360, 480, 3), np.uint8)
    scene = Scene(banners=[Banner("disconnected", LONG)])
    for style, width in ((Style(), 480 + overlay.PANEL_W), (Style(panel=False), 480)):
        out = render(image, scene, style=style)
        assert out.shape[1] == width
        layout = overlay.layout_banners(scene.banners, width, out.shape[0])
        (_banner, lines), = _drawn_lines(layout)
        # every drawn line fits inside the canvas (with its 8 px margins) ...
        for line in lines:
            assert cv2.getTextSize(line, overlay.FONT, layout.scale, 1)[0][0] <= width - 16, line
        # ... and together the lines are the whole text, nothing dropped
        assert " ".join(lines) == LONG
        colour = overlay.BANNER_COLOURS["disconnected"]
        h = layout.height
        band = out[:h]
        # the banner runs across the full width: its colour at both ends of every banner row (the last
        # row is a darker separator)
        assert np.all(band[:-1, 0] == colour) and np.all(band[:-1, -1] == colour)
        assert np.all(band[-1] == tuple(round(c * 0.6) for c in colour))
        # text is drawn (white on red), but no black outline pixels anywhere in the band
        assert np.all(band == (255, 255, 255), axis=2).sum() > 50
        assert not np.any(np.all(band < 40, axis=2))
        # nothing outside the banner rows changes: the picture below it is untouched
        assert not out[h:, :480].any()
    narrow = overlay.layout_banners(scene.banners, 480, 360)
    assert len(narrow.rows[0][3]) >= 2  # on the bare picture the text needed to wrap


def test_banners_span_the_panel_and_the_panel_starts_below_them() -> None:
    """The panel's content is the same as without banners, moved down by the banner block."""
    frame = sample.frame_message(5, 2, [0.1, 0.2, 0.6, 0.1], None, (0, 0, 640, 480), (480, 640), 1_000)
    image = np.zeros((480, 640, 3), np.uint8)
    banners = [Banner("disconnected", LONG), Banner("insecure", "INSECURE link: unencrypted (--insecure)")]
    plain = render(image, Scene(frame=frame))
    out = render(image, Scene(frame=frame, banners=banners))
    h = overlay.layout_banners(banners, out.shape[1], out.shape[0]).height
    assert h >= 2 * overlay.BANNER_H
    assert tuple(out[3, 640 + overlay.PANEL_W - 3]) == overlay.BANNER_COLOURS["disconnected"]
    assert tuple(out[h - 5, 640 + overlay.PANEL_W - 3]) == overlay.BANNER_COLOURS["insecure"]
    # the score bars and text of the panel, shifted by exactly the banner block
    rows = 200
    assert np.array_equal(out[h:h + rows, 640:], plain[:rows, 640:])
    assert np.all(out[h:, :640] == 0)


def test_stale_banner_text_is_dark_on_amber_and_one_line_keeps_the_old_height() -> None:
    scene = Scene(banners=[Banner("stale", "STALE: no message for 1.2 s")])
    out = render(np.zeros((480, 640, 3), np.uint8), scene)
    band = out[:overlay.BANNER_H]
    assert overlay.banner_text_colour("stale") == overlay.BLACK
    assert np.all(band == overlay.BLACK, axis=2).sum() > 30  # legible dark text on the light banner
    assert np.all(out[overlay.BANNER_H:, :640] == 0)


def test_a_flood_of_long_errors_stays_within_the_banner_budget() -> None:
    text = "1 bad message(s): skipped bad message: " + "x" * 2000
    banners = [Banner("error", text)] * 6
    out = render(np.zeros((240, 320, 3), np.uint8), Scene(banners=banners))
    layout = overlay.layout_banners(banners, out.shape[1], out.shape[0])
    assert layout.height <= 0.5 * out.shape[0]
    assert layout.scale == overlay.BANNER_MIN_SCALE
    last = layout.rows[-1][3][-1]
    assert last.endswith(" ...")  # said to be shortened, not silently cut
    for _, _, _, lines in layout.rows:
        for line in lines:
            assert cv2.getTextSize(line, overlay.FONT, layout.scale, 1)[0][0] <= out.shape[1] - 16


def _status_view(age_s: float, connected: bool | None = None) -> tuple[StreamView, float]:
    view = StreamView()
    now = time.monotonic()
    msg = sample.status_message(4, time.monotonic_ns())
    assert view.ingest(wire.encode("status", msg), now=now - age_s) is not None
    view.connected = connected
    return view, now


def test_panel_says_last_known_when_the_link_is_not_live() -> None:
    live_view, now = _status_view(0.2)
    live = live_view.scene(now=now)
    assert live.link == "live"
    live_lines = overlay.status_lines(live)
    assert any(text.startswith("source running  link") for text, _ in live_lines)
    assert all(colour == overlay.GREY for _, colour in live_lines)
    assert not any("last known" in text for text, _ in live_lines)

    stale_view, now = _status_view(4.2, connected=False)  # the engine went away 4.2 s ago
    stale = stale_view.scene(now=now)
    assert stale.link == "disconnected" and abs(stale.status_age_s - 4.2) < 0.05
    lines = overlay.status_lines(stale)
    text = " ".join(t for t, _ in lines)
    assert "source running (last known 4.2 s ago)" in text
    assert all(colour == overlay.DIM for _, colour in lines)
    assert any(b.kind == "disconnected" for b in stale.banners)


def test_last_known_lines_are_drawn_dim(tmp_path) -> None:
    view, now = _status_view(4.2, connected=False)
    disconnected = view.scene(now=now)
    view2, now2 = _status_view(0.1)
    live = view2.scene(now=now2)
    image = np.zeros((480, 640, 3), np.uint8)
    dim_out, live_out = render(image, disconnected), render(image, live)
    top_dim = overlay.layout_banners(disconnected.banners, dim_out.shape[1], 480).height
    top_live = overlay.layout_banners(live.banners, live_out.shape[1], 480).height
    # below the title, score bars: only the engine lines, down to the legend
    first = 4 + 20 + 2 * (22 + 4 * 16 + 6)
    region_dim = dim_out[top_dim + first: 480 - 24, 640:]
    region_live = live_out[top_live + first: 480 - 24, 640:]
    assert (region_live > CANVAS_BG + 20).any() and (region_dim > CANVAS_BG + 20).any()  # text in both
    assert region_live.max() >= overlay.GREY[0] - 5
    assert region_dim.max() <= overlay.DIM[0] + 5  # nothing drawn as bright as live text


def test_a_clip_tie_is_shown_as_a_tie_not_a_choice() -> None:
    """video.tie → the title reads "tie 1/2" and no clip bar is outlined as the chosen one."""
    from stream import wire
    from stream.view.overlay import PANEL_W, Scene, draw_panel
    from stream.view.subscriber import describe

    video, _ = wire.example("video")
    decided = draw_panel(540, Scene(video=video | {"probs": [0.1, 0.45, 0.35, 0.1], "score": 1, "tie": []}))
    tied = draw_panel(540, Scene(video=video | {"probs": [0.1, 0.45, 0.35, 0.1], "score": 1, "tie": [1, 2]}))
    white = np.all(decided == 255, axis=2)
    outline_cols = np.nonzero(white[:, PANEL_W - 38])[0]  # the outline's right edge (x = 32 + bar_w)
    assert outline_cols.size > 0  # the decided score's bar is outlined ...
    assert not np.all(tied == 255, axis=2)[:, PANEL_W - 38].any()  # ... the tied one is not
    assert "score=tie:1/2" in describe("video", video | {"tie": [1, 2], "score": 1})
    assert "score=2" in describe("video", video | {"tie": [], "score": 2})
