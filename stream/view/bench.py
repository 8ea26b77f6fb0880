"""Viewer render rate on this machine: ``python -m stream.view.bench [--n 300]``.

Measures, on a 480×640 synthetic frame with a demo-like message set (``stream.view.sample``):

* ``render``: drawing only (boxes, class contours, side panel) on the full frame;
* ``render+uncertainty``: the same with the MC-dropout heat map;
* ``full path``: per engine frame, validate + decode six messages (image JPEG, frame, video, seg PNG,
  status, exam), decode the JPEG and the class-map PNG, then render — what ``lus-view`` does when it keeps
  up with every message.
"""

from __future__ import annotations

import argparse
import time

import cv2

from stream import wire
from stream.view import overlay, sample
from stream.view.subscriber import StreamView


def measure(n: int = 300, seed: int = 3) -> dict[str, float]:
    from synth import LiveSimulator

    cv2.setNumThreads(1)
    sim = LiveSimulator(seed=seed, schedule=[(0, 3)])
    frames = [sim.next() for _ in range(20)]
    exam = sample.demo_exam([0, 1, 2, 3, 1, 2, 3, 0] + [None] * 6, current=8)
    encoded = [[wire.encode(t, m, p) for t, m, p in sample.demo_scene_messages(img, mask, s, seq=i,
                                                                                  exam_msg=exam)]
               for i, (img, s, mask) in enumerate(frames)]
    view = StreamView()
    for parts in encoded[0]:
        view.ingest(parts)
    scene = view.scene(0)
    bgr = cv2.cvtColor(frames[0][0], cv2.COLOR_GRAY2BGR)
    out: dict[str, float] = {}
    styles = {"render": overlay.Style(), "render+uncertainty": overlay.Style(show_uncertainty=True)}
    for name, style in styles.items():
        t = time.perf_counter()
        for _ in range(n):
            overlay.render(bgr, scene, None, style)
        out[name] = n / (time.perf_counter() - t)
    view = StreamView()
    t = time.perf_counter()
    for k in range(n):
        for parts in encoded[k % len(encoded)]:
            view.ingest(parts)
        current = view.current_image()
        assert current is not None, "the demo scene has an image message"
        picture, rect, seq = current
        overlay.render(picture, view.scene(seq), rect, overlay.Style())
    out["full path"] = n / (time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.view.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300, help="renders per measurement")
    args = p.parse_args(argv)
    for name, fps in measure(args.n).items():
        print(f"{name:20s} {fps:7.1f} overlays/s at 480x640")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
