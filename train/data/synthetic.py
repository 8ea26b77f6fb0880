"""Generate a synthetic ICLUS-DB-style dataset with the simulator (``synth``) and write it in the
layout of :mod:`train.data.layout`; also draws the contact sheet (examples of each score with
their masks overlaid). ``tools/make_synthetic.py`` is the command line over :func:`generate`.

Patients mirror ICLUS-DB's mix (§III): ~40 % healthy (scores mostly 0, some 1), the rest with
COVID-19 findings (scores 1-3, some 0). Each patient belongs to one hospital, whose scanners
(``synth.SCANNERS``) record its clips (convex more often than linear, as in ICLUS-DB). About half
the clips change score part-way (a transition at 30-70 % of the clip). Video-level labels come
from five simulated clinicians (``synth.simulate_clinicians``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import synth

from .layout import LayoutWriter

CLASS_COLOURS_BGR = np.array(
    [[60, 220, 60], [0, 230, 255], [0, 140, 255], [40, 40, 255], [0, 0, 0]], np.uint8
)


def hospitals() -> dict[str, list[str]]:
    """Hospital name -> its scanner profile names."""
    out: dict[str, list[str]] = {}
    for name, prof in sorted(synth.SCANNERS.items()):
        out.setdefault(prof.hospital, []).append(name)
    return out


def _clip_schedule(rng: np.random.Generator, healthy: bool, n_frames: int) -> list[tuple[int, int]]:
    p = [0.8, 0.2, 0.0, 0.0] if healthy else [0.12, 0.3, 0.4, 0.18]
    score = int(rng.choice(4, p=p))
    if rng.random() < 0.5 and n_frames >= 10:
        step = int(rng.choice([-1, 1])) * (2 if rng.random() < 0.15 else 1)
        nxt = int(np.clip(score + step, 0, 3))
        if nxt == score:
            nxt = int(np.clip(score - step, 0, 3))
        at = int(rng.integers(int(0.3 * n_frames), int(0.7 * n_frames) + 1))
        return [(0, score), (at, nxt)]
    return [(0, score)]


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """BGR image of a gray frame with the class mask tinted (0 green, 1 yellow, 2 orange, 3 red)."""
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    sel = mask < 4
    bgr[sel] = ((1 - alpha) * bgr[sel] + alpha * CLASS_COLOURS_BGR[mask[sel]]).astype(np.uint8)
    return bgr


def contact_sheet(
    examples: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, str]],
    path: str | Path,
    tile_hw: tuple[int, int] = (165, 220),
) -> None:
    """4 rows (scores 0-3) × [convex frame, convex + mask, linear frame, linear + mask] PNG."""
    th, tw = tile_hw
    head = 22
    rows = []
    for score in range(4):
        tiles = []
        for probe in ("convex", "linear"):
            frame, mask, label = examples[(probe, score)]
            for img in (cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), overlay(frame, mask)):
                t = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
                tile = np.zeros((th + head, tw, 3), np.uint8)
                tile[head:] = t
                cv2.putText(
                    tile, label, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (220, 220, 220), 1, cv2.LINE_AA
                )
                tiles.append(tile)
        rows.append(np.hstack(tiles))
    sheet = np.vstack(rows)
    legend = np.zeros((24, sheet.shape[1], 3), np.uint8)
    x = 6
    for c, name in enumerate(
        ["0 pleura+A-lines", "1 B-lines", "2 small consolidation", "3 large cons./white lung"]
    ):
        cv2.rectangle(legend, (x, 6), (x + 12, 18), tuple(int(v) for v in CLASS_COLOURS_BGR[c]), -1)
        cv2.putText(
            legend, name, (x + 16, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (220, 220, 220), 1, cv2.LINE_AA
        )
        x += 16 + 9 * len(name) + 14
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack([sheet, legend]), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def generate(
    out: str | Path,
    patients: int,
    clips_per_patient: int,
    seed: int,
    frames: tuple[int, int] = (60, 120),
    size_hw: tuple[int, int] = (480, 640),
    fps: float = 30.0,
    masks_per_clip: int = 6,
    test_fraction: float = 0.25,
    as_frames: bool = False,
    config: synth.SimConfig | None = None,
    contact_sheet_path: str | Path | None = None,
    command: str = "",
    progress: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Write the dataset to ``out``; returns a summary (counts, score histogram, timings)."""
    if patients < 2:
        raise ValueError(f"need at least 2 patients for a train/test split, got {patients}")
    if clips_per_patient < 1 or frames[0] < 1 or frames[1] < frames[0]:
        raise ValueError(f"bad sizes: clips_per_patient={clips_per_patient}, frames={frames}")
    cfg = config or synth.SimConfig()
    out = Path(out)
    if (out / "videos.csv").exists():
        raise FileExistsError(f"{out} already holds a dataset (videos.csv); choose a new --out folder")
    root = np.random.SeedSequence(seed)
    rng = np.random.default_rng(root.spawn(1)[0])
    hosp = hospitals()
    names = sorted(hosp)
    info = {
        "synthetic": True,
        "clinical_use": False,
        "generator": "train.data.synthetic",
        "seed": seed,
        "command": command,
        "frame_hw": list(size_hw),
        "fps": fps,
        "clinician_agreement": cfg.clinician_agreement,
        "sim_config": dataclasses.asdict(cfg),
    }
    writer = LayoutWriter(out, f"synthetic-lus-seed{seed}", info)
    examples: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, str]] = {}
    hist = np.zeros(4, np.int64)
    t_sim = t_write = 0.0
    n_frames_total = 0
    patient_ids = [f"P{p + 1:03d}" for p in range(patients)]
    for _p, pid in enumerate(patient_ids):
        hospital = names[int(rng.integers(len(names)))]
        healthy = rng.random() < 0.4
        for k in range(clips_per_patient):
            scanners = hosp[hospital]
            w = np.array([3.0 if synth.SCANNERS[s].probe == "convex" else 1.0 for s in scanners])
            scanner = scanners[int(rng.choice(len(scanners), p=w / w.sum()))]
            probe = synth.SCANNERS[scanner].probe
            n = int(rng.integers(frames[0], frames[1] + 1))
            schedule = _clip_schedule(rng, healthy, n)
            clip_seed = int(rng.integers(2**31))
            t0 = time.perf_counter()
            clip = synth.simulate_clip(
                synth.ClipSpec(
                    seed=clip_seed,
                    n_frames=n,
                    probe=probe,
                    schedule=schedule,
                    scanner=scanner,
                    fps=fps,
                    height=size_hw[0],
                    width=size_hw[1],
                ),
                cfg,
            )
            t_sim += time.perf_counter() - t0
            m = min(masks_per_clip, n)
            idx = sorted(rng.choice(n, size=m, replace=False).tolist()) if m > 0 else []
            truth = synth.consensus_score(clip.scores)
            clinicians = synth.simulate_clinicians(truth, rng, cfg.n_clinicians, cfg.clinician_agreement)
            vid = f"{pid}_V{k + 1:02d}"
            t0 = time.perf_counter()
            writer.add_video(
                video_id=vid,
                patient_id=pid,
                frames=clip.frames,
                fps=fps,
                probe=probe,
                hospital=hospital,
                frame_scores=clip.scores.tolist(),
                clinician_scores=clinicians,
                masks={i: clip.masks[i] for i in idx},
                scanner=scanner,
                as_frames=as_frames,
            )
            t_write += time.perf_counter() - t0
            hist += np.bincount(clip.scores, minlength=4)
            n_frames_total += n
            for s in set(clip.scores.tolist()):
                if (probe, s) not in examples:
                    i = int(np.flatnonzero(clip.scores == s)[len(np.flatnonzero(clip.scores == s)) // 2])
                    examples[(probe, s)] = (
                        clip.frames[i],
                        clip.masks[i],
                        f"score {s}  {vid} #{i}  {scanner}",
                    )
            if progress is not None:
                progress(1)
    rng_split = np.random.default_rng(root.spawn(2)[1])
    n_test = min(patients - 1, max(1, round(test_fraction * patients)))
    test = sorted(rng_split.permutation(patient_ids)[:n_test].tolist())
    writer.close({"train": [p for p in patient_ids if p not in test], "test": test})
    if contact_sheet_path is not None:
        for probe in ("convex", "linear"):
            for s in range(4):
                if (probe, s) not in examples:  # small datasets: draw the missing example directly
                    c = synth.simulate_clip(
                        synth.ClipSpec(
                            seed=seed + 17 * s + (probe == "linear"),
                            n_frames=12,
                            probe=probe,
                            schedule=[(0, s)],
                            height=size_hw[0],
                            width=size_hw[1],
                        ),
                        cfg,
                    )
                    examples[(probe, s)] = (
                        c.frames[-1],
                        c.masks[-1],
                        f"score {s}  (extra)  {c.meta['scanner']}",
                    )
        contact_sheet(examples, contact_sheet_path)
    return {
        "videos": patients * clips_per_patient,
        "patients": patients,
        "frames": n_frames_total,
        "frame_score_histogram": hist.tolist(),
        "simulate_s": round(t_sim, 2),
        "write_s": round(t_write, 2),
        "test_patients": test,
    }
