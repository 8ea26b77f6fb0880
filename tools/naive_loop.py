"""The naive reference loop that ``lus-stream bench`` compares the engine against (the benchmark's target:
the engine at least 3× faster than this loop, docs/performance.md): the same frame model in PyTorch eager,
one frame at a time, in one thread of one process:

    OpenCV read → grey → ROI crop (detected once, on the first frame) → letterbox + scaling
    (engines.preprocess) → model → recompute the clip aggregate over ALL frames so far (the
    trainable uninorm layer's fold, train/models/uninorm.py) → JSON over a ZeroMQ PUB socket.

Model, in order of preference: ``--checkpoint`` (a ``lus-train frame`` checkpoint, rebuilt with its
model class from ``train/models``), else the exported torch program ``NAME.torch.pt2`` beside the
manifest (the same graph the ``torch`` backend runs), else the architecture rebuilt from the
manifest's ``training.config`` with random weights (same arithmetic, different scores: the
output says which was used).

    python tools/naive_loop.py --manifest models/frame/regstn.json --clip CLIP --pub tcp://127.0.0.1:5599

Every message is ``{"seq", "t_capture_ns", "t_publish_ns", "probs", "score", "video_probs",
"video_score"}``; after the last frame one ``{"final": true, "frames": N}``. At the end one JSON line
with the run's summary (frames, wall seconds, fps, model source) is printed on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")


def load_frame_model(manifest_path: Path, checkpoint: Path | None) -> tuple[Any, str]:
    """(callable frame [N,1,H,W] → (probs, theta), description of where the weights came from)."""
    import torch

    from engines.manifest import load_manifest
    from engines.torch_backend import torch_manifest_path

    if checkpoint is not None:
        from train.frame.export import FrameScorer
        from train.frame.loop import load_checkpoint

        model, _cfg, _ = load_checkpoint(checkpoint)
        return FrameScorer(model).eval(), f"checkpoint {checkpoint} (train/models class, eager)"
    tman = torch_manifest_path(manifest_path)
    if tman.is_file():
        pt2 = tman.with_suffix(".pt2")
        if pt2.is_file():
            return torch.export.load(
                str(pt2)
            ).module(), f"exported torch program {pt2.name} (eager interpreter)"
    m = load_manifest(manifest_path, verify_file=False)
    cfg = (m.get("training") or {}).get("config")
    if not cfg:
        raise SystemExit(
            f"{manifest_path}: no checkpoint given, no {tman.name} beside it and no training.config in the "
            "manifest: cannot build the PyTorch model; pass --checkpoint runs/frame/.../last.pt"
        )
    from train.frame.config import FrameConfig
    from train.frame.export import FrameScorer
    from train.frame.loop import model_from_config

    model = model_from_config(FrameConfig.from_dict(cfg))
    return FrameScorer(model).eval(), "architecture from the manifest's training.config, RANDOM weights"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--manifest", type=Path, required=True, help="frame model manifest (models/frame/NAME.json)"
    )
    p.add_argument("--aggregator", type=Path, default=None, help="aggregator manifest (neutral elements)")
    p.add_argument("--checkpoint", type=Path, default=None, help="lus-train frame checkpoint (last.pt)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--clip", type=Path, help="video file (read with OpenCV)")
    src.add_argument("--synthetic", type=int, metavar="N", help="N frames of the live simulator instead")
    p.add_argument("--pub", default="tcp://127.0.0.1:5599", help="ZeroMQ PUB endpoint for the JSON messages")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (team rule on 2 cores: 1)")
    p.add_argument("--join-wait-s", type=float, default=0.3, help="pause after binding (slow joiners)")
    args = p.parse_args(argv)

    import cv2
    import numpy as np
    import torch
    import zmq

    from engines.preprocess import preprocess, to_gray
    from stream.roi import detect_roi
    from train.models.uninorm import uninorm_fold

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    model, model_source = load_frame_model(args.manifest, args.checkpoint)
    from engines.manifest import load_manifest

    spec = load_manifest(args.manifest, verify_file=False)["preprocessing"]
    neutral = [0.0] * 4
    if args.aggregator is not None:
        from stream.aggregate import load_neutral_elements

        neutral = load_neutral_elements(args.aggregator)
    e = torch.tensor(neutral, dtype=torch.float64)

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.bind(args.pub)
    time.sleep(args.join_wait_s)

    if args.clip is not None:
        cap = cv2.VideoCapture(str(args.clip))
        if not cap.isOpened():
            raise SystemExit(f"cannot open {args.clip} with OpenCV")

        def read() -> np.ndarray | None:
            ok, img = cap.read()
            return img if ok else None
    else:
        from synth import LiveSimulator

        sim = LiveSimulator(seed=0)
        left = [args.synthetic]

        def read() -> np.ndarray | None:
            if left[0] <= 0:
                return None
            left[0] -= 1
            return sim.next()[0]

    history: list[torch.Tensor] = []
    roi = None
    n = 0
    t0 = time.monotonic()
    with torch.inference_mode():
        while args.max_frames is None or n < args.max_frames:
            img = read()
            t_cap = time.monotonic_ns()
            if img is None:
                break
            gray = to_gray(img)
            if roi is None:
                roi = detect_roi(gray)
            x, y, w, h = roi
            xin, _geo = preprocess(gray[y : y + h, x : x + w], spec)
            probs, _theta = model(torch.from_numpy(xin))
            history.append(probs[0].double())
            video = torch.softmax(uninorm_fold(torch.stack(history), e), dim=-1)  # over ALL frames so far
            msg = {
                "seq": n, "t_capture_ns": t_cap, "probs": probs[0].tolist(), "score": int(probs[0].argmax()),
                "video_probs": video.tolist(), "video_score": int(video.argmax()),
                "t_publish_ns": time.monotonic_ns(),
            }  # fmt: skip
            sock.send_string(json.dumps(msg))
            n += 1
    sock.send_string(json.dumps({"final": True, "frames": n}))
    wall = time.monotonic() - t0
    sock.close()
    ctx.term()
    print(
        json.dumps(
            {
                "frames": n,
                "wall_s": wall,
                "fps": n / wall if wall > 0 else None,
                "model_source": model_source,
                "threads": args.threads,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
