"""The on-disk dataset layout (mirrors what ICLUS-DB provides, Roy et al. 2020 §III): reader, writer
and a full consistency check. numpy + PyAV + OpenCV only (no torch). See ``docs/dataset.md``.

    ROOT/
      dataset.json                      name, schema_version, synthetic flag, how it was made, labels
      videos.csv                        one row per video (see VIDEO_COLUMNS)
      splits.json                       optional: {"train": [patient ids], "test": [patient ids]}
      <patient_id>/<video_id>.mp4       a video file (H.264 MP4 or anything PyAV decodes) ...
      <patient_id>/<video_id>/          ... or a folder of frames 000000.png, 000001.png, ...
      frame_scores/<video_id>.csv       "frame,score" — one row per frame, scores 0..3
      masks/<video_id>/<frame>.json     LabelMe polygons (labels "0".."3") of annotated frames

``videos.csv`` columns: video_id, patient_id, hospital, probe (convex|linear), scanner, path
(relative to ROOT, or absolute for a clip referenced in place), fps, n_frames, clinician_scores
(space-separated video scores from the clinicians, e.g. "2 2 1 2 2"; empty when the video has no
video-level annotation); optional ``zone`` (scanned zone, e.g. L1..R3; may be empty); any further
column is kept as a string in ``VideoRecord.extra`` (e.g. a_lines, b_lines, cov_test).

``dataset.json`` may carry ``"labels": {"frame_scores": bool, "video_raters": int, "masks": bool}``
(absent = frame scores present, the original layout). A clip-level collection (one score per clip,
e.g. imported with ``lus-train import``) has ``frame_scores: false``: no ``frame_scores/`` files,
and ``VideoRecord.frame_scores`` is ``None`` — the frames' scores are unknown, not zero.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SCHEMA_VERSION = 1
VIDEO_COLUMNS = [
    "video_id",
    "patient_id",
    "hospital",
    "probe",
    "scanner",
    "path",
    "fps",
    "n_frames",
    "clinician_scores",
]
OPTIONAL_COLUMNS = ["zone"]  # further unknown columns are kept in VideoRecord.extra
LABEL_DEFAULTS: dict[str, Any] = {"frame_scores": True, "video_raters": None, "masks": True}
FRAME_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DatasetError(ValueError):
    """A dataset folder is inconsistent; ``problems`` lists every problem found (file: what)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        head = f"{len(self.problems)} problem(s) in the dataset:\n  " + "\n  ".join(self.problems)
        super().__init__(head + "\nRun `python -m train.data check DIR` for the full list.")


@dataclass
class VideoRecord:
    """One video and its labels (frame scores, clinicians' video scores, annotated frames).

    ``frame_scores`` is None for clip-level data (dataset.json ``labels.frame_scores: false``): the
    frames' scores are unknown; use :attr:`clip_score` / ``clinician_scores`` instead.
    """

    video_id: str
    patient_id: str
    probe: str
    hospital: str
    path: Path  # video file or frame folder
    fps: float
    n_frames: int
    frame_scores: np.ndarray | None  # int64 [n_frames]; None = no frame labels (clip-level data)
    clinician_scores: list[int] = field(default_factory=list)
    mask_files: dict[int, Path] = field(default_factory=dict)  # frame index -> LabelMe JSON
    scanner: str = ""
    zone: str = ""  # scanned zone (e.g. L1..R3); "" = not recorded
    extra: dict[str, str] = field(default_factory=dict)  # further videos.csv columns, as strings
    dataset: str = ""  # the dataset folder the record was read from ("" = built in memory)

    @property
    def is_frame_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def clip_score(self) -> int | None:
        """Majority of the clinicians' video scores (ties -> the lower score); None when none."""
        if not self.clinician_scores:
            return None
        return int(np.argmax(np.bincount(np.asarray(self.clinician_scores, np.int64), minlength=4)))


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _read_scores(path: Path, problems: list[str]) -> np.ndarray | None:
    if not path.is_file():
        problems.append(f"{path}: missing frame-score file")
        return None
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        pairs = sorted((int(r["frame"]), int(r["score"])) for r in rows)
    except (KeyError, ValueError, TypeError) as exc:
        problems.append(f"{path}: malformed frame-score CSV (need columns frame,score with integers): {exc}")
        return None
    frames = [f for f, _ in pairs]
    if frames != list(range(len(frames))):
        problems.append(f"{path}: frame indices must be 0..N-1 without gaps or repeats")
        return None
    scores = np.array([s for _, s in pairs], dtype=np.int64)
    bad = sorted(set(scores[(scores < 0) | (scores > 3)].tolist()))
    if bad:
        problems.append(f"{path}: scores {bad} are not scores 0-3")
        return None
    return scores


def read_labels(root: str | Path, problems: list[str] | None = None) -> dict[str, Any]:
    """The ``labels`` block of ``dataset.json`` with defaults for what it leaves out (see the module
    docstring); a missing ``dataset.json`` or block means the original layout (frame scores)."""
    path = Path(root) / "dataset.json"
    labels = dict(LABEL_DEFAULTS)
    if not path.is_file():
        return labels
    try:
        block = json.loads(path.read_text()).get("labels") or {}
        if not isinstance(block, dict):
            raise TypeError("'labels' must be an object")
    except (json.JSONDecodeError, AttributeError, TypeError) as exc:
        if problems is not None:
            problems.append(f"{path}: malformed JSON or labels block: {exc}")
        return labels
    for key, value in block.items():
        ok = isinstance(value, bool) if key in ("frame_scores", "masks") else True
        if key == "video_raters":
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        if not ok:
            if problems is not None:
                problems.append(f"{path}: labels.{key} = {value!r} has the wrong type")
            continue
        labels[key] = value
    return labels


def _parse_row(
    root: Path, row: dict[str, str], line: int, problems: list[str], labels: dict[str, Any] | None = None
) -> VideoRecord | None:
    labels = labels or LABEL_DEFAULTS
    where = f"{root / 'videos.csv'} line {line}"
    try:
        vid, pid = row["video_id"].strip(), (row["patient_id"] or "").strip()
        fps, n = float(row["fps"]), int(row["n_frames"])
        clin_txt = (row.get("clinician_scores") or "").strip()
        clinicians = [int(x) for x in clin_txt.split()] if clin_txt else []
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        problems.append(f"{where}: malformed row ({exc}); columns must be {','.join(VIDEO_COLUMNS)}")
        return None
    if not pid:
        problems.append(f"{where}: missing patient id for video {vid!r}")
        return None
    if not _ID.match(vid) or not _ID.match(pid):
        problems.append(
            f"{where}: video_id {vid!r} / patient_id {pid!r} must be simple names (letters, digits, _.-)"
        )
        return None
    probe = (row.get("probe") or "").strip()
    if probe not in ("convex", "linear"):
        problems.append(f"{where}: probe {probe!r} must be 'convex' or 'linear'")
    if fps <= 0 or n <= 0:
        problems.append(f"{where}: fps ({fps}) and n_frames ({n}) must be positive")
    if any(c not in (0, 1, 2, 3) for c in clinicians):
        problems.append(f"{where}: clinician scores {clinicians} must be scores 0-3")
    raters = labels.get("video_raters")
    if raters and clinicians and len(clinicians) != raters:
        problems.append(f"{where}: {len(clinicians)} video scores but dataset.json says {raters} rater(s)")
    raw_path = (row.get("path") or "").strip()
    path = root / raw_path  # an absolute path stays absolute
    if not raw_path or not path.exists():
        problems.append(f"{path}: missing video (file or frame folder) for video {vid}")
    scores = None
    if labels.get("frame_scores", True):
        scores = _read_scores(root / "frame_scores" / f"{vid}.csv", problems)
    if scores is not None and len(scores) != n:
        problems.append(
            f"{root / 'frame_scores' / (vid + '.csv')}: {len(scores)} frame scores but n_frames is {n}"
        )
    masks: dict[int, Path] = {}
    mdir = root / "masks" / vid
    if mdir.is_dir():
        for f in sorted(mdir.glob("*.json")):
            if not f.stem.isdigit():
                problems.append(f"{f}: mask file names must be the frame index, e.g. 000012.json")
                continue
            idx = int(f.stem)
            if idx >= n:
                problems.append(f"{f}: frame index {idx} is beyond the video ({n} frames)")
                continue
            masks[idx] = f
    known = set(VIDEO_COLUMNS) | set(OPTIONAL_COLUMNS)
    extra = {str(k): (v or "").strip() for k, v in row.items() if k is not None and k not in known}
    if scores is None and labels.get("frame_scores", True):
        scores = np.zeros(0, np.int64)  # unreadable frame scores: already reported as a problem
    return VideoRecord(
        vid,
        pid,
        probe,
        (row.get("hospital") or "").strip(),
        path,
        fps,
        n,
        scores,
        clinicians,
        masks,
        (row.get("scanner") or "").strip(),
        (row.get("zone") or "").strip(),
        extra,
        str(root),
    )


def scan_dataset(root: str | Path) -> tuple[list[VideoRecord], list[str]]:
    """Read ``videos.csv`` and the label files; return the records and every problem found.

    Cheap checks only (files exist, CSVs parse, indices and scores in range); :func:`check_dataset`
    also decodes every video and parses every LabelMe file.
    """
    root = Path(root)
    problems: list[str] = []
    index = root / "videos.csv"
    if not index.is_file():
        return [], [f"{index}: missing (is {root} a dataset folder? make one with tools/make_synthetic.py)"]
    with index.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [
            c
            for c in ("video_id", "patient_id", "path", "fps", "n_frames")
            if c not in (reader.fieldnames or [])
        ]
        if missing:
            return [], [f"{index}: missing columns {missing}; columns must be {','.join(VIDEO_COLUMNS)}"]
        rows = list(reader)
    labels = read_labels(root, problems)
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    files: dict[Path, tuple[str, int]] = {}
    for line, row in enumerate(rows, start=2):
        rec = _parse_row(root, row, line, problems, labels)
        if rec is None:
            continue
        if rec.video_id in seen:
            first = seen[rec.video_id]
            problems.append(
                f"{index} line {line}: duplicate clip: video_id {rec.video_id} repeats line {first}"
            )
            continue
        key = rec.path.resolve()
        if key in files:
            other, other_line = files[key]
            problems.append(
                f"{index} line {line}: duplicate clip: {rec.path} is also video {other} (line {other_line})"
            )
            continue
        seen[rec.video_id] = line
        files[key] = (rec.video_id, line)
        records.append(rec)
    return records, problems


def read_dataset(root: str | Path) -> list[VideoRecord]:
    """All videos of a dataset folder; raises :class:`DatasetError` listing every problem."""
    records, problems = scan_dataset(root)
    if problems:
        raise DatasetError(problems)
    return records


def read_splits(root: str | Path) -> dict[str, list[str]] | None:
    """``splits.json`` ({"train": [...], "test": [...]}, patient ids) or None when absent."""
    path = Path(root) / "splits.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError([f"{path}: malformed JSON: {exc}"]) from exc
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DatasetError([f"{path}: must map split names to lists of patient ids"])
    return {str(k): [str(p) for p in v] for k, v in data.items()}


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTS)


def read_frames(record: VideoRecord, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Decode frames (all, or ``indices`` in the given order) as gray uint8 [T, H, W]."""
    want = None if indices is None else [int(i) for i in indices]
    if want is not None and any(i < 0 for i in want):
        raise ValueError(f"{record.path}: negative frame index in {want}")
    if record.path.is_dir():
        files = _frame_files(record.path)
        pick = range(len(files)) if want is None else want
        out = []
        for i in pick:
            if i >= len(files):
                raise ValueError(f"{record.path}: frame index {i} is beyond the video ({len(files)} frames)")
            img = cv2.imread(str(files[i]), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise ValueError(f"{files[i]}: cannot read the image")
            out.append(img)
        return np.stack(out) if out else np.zeros((0, 1, 1), np.uint8)
    if not record.path.is_file():
        raise FileNotFoundError(f"{record.path}: missing video for {record.video_id}")
    return _decode(record.path, want)


def _decode(path: Path, want: list[int] | None) -> np.ndarray:
    import av  # PyAV; imported here so importing the layout stays cheap

    last = None if want is None else (max(want) if want else -1)
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if last is not None and i > last:
                    break
                frames.append(frame.to_ndarray(format="gray"))
    except (av.error.FFmpegError, IndexError) as exc:  # type: ignore[attr-defined]
        raise ValueError(f"{path}: cannot decode the video: {exc}") from exc
    if want is None:
        return np.stack(frames) if frames else np.zeros((0, 1, 1), np.uint8)
    for i in want:
        if i >= len(frames):
            raise ValueError(f"{path}: frame index {i} is beyond the video ({len(frames)} frames)")
    return np.stack([frames[i] for i in want]) if want else np.zeros((0, 1, 1), np.uint8)


def count_frames(record: VideoRecord) -> int:
    """Frames actually in the video (decodes a video file; lists a frame folder)."""
    if record.path.is_dir():
        return len(_frame_files(record.path))
    import av

    n = 0
    with av.open(str(record.path)) as container:
        for _ in container.decode(container.streams.video[0]):
            n += 1
    return n


# ----------------------------------------------------------------------------------------------
# Full check
# ----------------------------------------------------------------------------------------------


def check_dataset(root: str | Path, decode: bool = True) -> list[str]:
    """Every problem of a dataset folder, one line each (empty list = OK).

    Beyond :func:`scan_dataset` (missing video, missing patient id, score outside 0-3, duplicate
    clip — the same video_id or the same file twice): videos decode and hold ``n_frames`` frames,
    every LabelMe file parses with known labels, clinicians' lists have the same length, and
    ``splits.json`` puts no patient in two splits and names only known patients.
    """
    from .labelme import LabelMeError, read_labelme

    root = Path(root)
    records, problems = scan_dataset(root)
    lengths = {len(r.clinician_scores) for r in records if r.clinician_scores}
    if len(lengths) > 1:
        problems.append(
            f"{root / 'videos.csv'}: videos have different numbers of clinician scores {sorted(lengths)}"
        )
    for rec in records:
        if decode and rec.path.exists():
            try:
                actual = count_frames(rec)
            except Exception as exc:
                problems.append(f"{rec.path}: cannot decode the video: {exc}")
                actual = None
            if actual is not None and actual != rec.n_frames:
                problems.append(
                    f"{rec.path}: holds {actual} frames but videos.csv says n_frames={rec.n_frames}"
                )
            if actual is not None:
                for idx, f in rec.mask_files.items():
                    if idx >= actual:
                        problems.append(f"{f}: frame index {idx} is beyond the video ({actual} frames)")
        for f in rec.mask_files.values():
            try:
                read_labelme(f)
            except LabelMeError as exc:
                problems.append(str(exc))
    try:
        splits = read_splits(root)
    except DatasetError as exc:
        problems.extend(exc.problems)
        splits = None
    if splits:
        known = {r.patient_id for r in records}
        owner: dict[str, str] = {}
        for name, patients in splits.items():
            for p in patients:
                if p in owner and owner[p] != name:
                    problems.append(
                        f"{root / 'splits.json'}: patient {p} is in both '{owner[p]}' and '{name}'"
                    )
                owner.setdefault(p, name)
                if p not in known:
                    problems.append(f"{root / 'splits.json'}: patient {p} (split '{name}') has no videos")
    return problems


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def write_video(path: Path, frames: np.ndarray, fps: float, crf: int = 20) -> None:
    """Write gray uint8 frames [T, H, W] as an H.264 MP4 (yuv420p) with PyAV."""
    import av

    _t, h, w = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{path}: H.264 needs even frame sizes, got {h}x{w}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        for img in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="gray")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_frame_folder(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:06d}.png"), img)


class LayoutWriter:
    """Writes a dataset folder video by video; :meth:`close` writes ``videos.csv`` and ``dataset.json``."""

    def __init__(self, root: str | Path, name: str, info: dict[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name, self.info = name, dict(info or {})
        self.rows: list[dict[str, Any]] = []
        self._kinds: set[str] = set()  # "frames" (add_video) and/or "clips" (add_clip)
        self._masks = False

    def add_video(
        self,
        *,
        video_id: str,
        patient_id: str,
        frames: np.ndarray,
        fps: float,
        probe: str,
        hospital: str,
        frame_scores: Sequence[int],
        clinician_scores: Sequence[int] = (),
        masks: dict[int, np.ndarray] | None = None,
        scanner: str = "",
        as_frames: bool = False,
        min_region_px: int = 4,
    ) -> VideoRecord:
        """Write one video, its frame scores and LabelMe files for ``masks`` (frame -> class mask)."""
        from .labelme import write_labelme

        for v in (video_id, patient_id):
            if not _ID.match(v):
                raise ValueError(f"id {v!r} must be a simple name (letters, digits, _.-)")
        if len(frame_scores) != len(frames):
            raise ValueError(f"{video_id}: {len(frames)} frames but {len(frame_scores)} frame scores")
        if "clips" in self._kinds:
            raise ValueError("a dataset holds frame-labelled videos or clip-level clips, not both")
        self._kinds.add("frames")
        self._masks = self._masks or bool(masks)
        rel = Path(patient_id) / (video_id if as_frames else f"{video_id}.mp4")
        if as_frames:
            write_frame_folder(self.root / rel, frames)
        else:
            write_video(self.root / rel, frames, fps)
        sdir = self.root / "frame_scores"
        sdir.mkdir(exist_ok=True)
        with (sdir / f"{video_id}.csv").open("w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["frame", "score"])
            wr.writerows((i, int(s)) for i, s in enumerate(frame_scores))
        mask_files = {}
        for idx, mask in sorted((masks or {}).items()):
            f = self.root / "masks" / video_id / f"{idx:06d}.json"
            write_labelme(
                f, mask, image_path=f"../../{rel.as_posix()}#frame={idx}", min_region_px=min_region_px
            )
            mask_files[idx] = f
        row = {
            "video_id": video_id,
            "patient_id": patient_id,
            "hospital": hospital,
            "probe": probe,
            "scanner": scanner,
            "path": rel.as_posix(),
            "fps": f"{fps:g}",
            "n_frames": len(frames),
            "clinician_scores": " ".join(str(int(c)) for c in clinician_scores),
        }
        self.rows.append(row)
        return VideoRecord(
            video_id,
            patient_id,
            probe,
            hospital,
            self.root / rel,
            fps,
            len(frames),
            np.asarray(frame_scores, np.int64),
            [int(c) for c in clinician_scores],
            mask_files,
            scanner,
        )

    def add_clip(
        self,
        *,
        video_id: str,
        patient_id: str,
        path: str | Path,
        fps: float,
        n_frames: int,
        probe: str,
        hospital: str,
        clinician_scores: Sequence[int],
        zone: str = "",
        scanner: str = "",
        extra: dict[str, str] | None = None,
        copy: bool = False,
    ) -> VideoRecord:
        """Add an existing clip with clip-level labels only (no frame scores, no masks).

        The clip is referenced in place by its absolute path, or with ``copy=True`` copied byte for
        byte (``shutil.copy2``, never re-encoded) to ``ROOT/<patient_id>/<video_id><suffix>``.
        ``fps`` and ``n_frames`` should come from the container (the check compares them).
        """
        for v in (video_id, patient_id):
            if not _ID.match(v):
                raise ValueError(f"id {v!r} must be a simple name (letters, digits, _.-)")
        if "frames" in self._kinds:
            raise ValueError("a dataset holds frame-labelled videos or clip-level clips, not both")
        if any(int(c) not in (0, 1, 2, 3) for c in clinician_scores):
            raise ValueError(f"{video_id}: clinician scores {list(clinician_scores)} must be scores 0-3")
        self._kinds.add("clips")
        src = Path(path).resolve()
        if copy:
            rel = Path(patient_id) / f"{video_id}{src.suffix}"
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, self.root / rel)
            stored, full = rel.as_posix(), self.root / rel
        else:
            stored, full = str(src), src
        extra = {str(k): " ".join(str(v).split()) for k, v in (extra or {}).items()}  # one line each
        clash = sorted(set(extra) & (set(VIDEO_COLUMNS) | set(OPTIONAL_COLUMNS)))
        if clash:
            raise ValueError(f"{video_id}: extra columns {clash} clash with the layout's own columns")
        self.rows.append(
            {
                "video_id": video_id,
                "patient_id": patient_id,
                "hospital": hospital,
                "probe": probe,
                "scanner": scanner,
                "path": stored,
                "fps": f"{fps:g}",
                "n_frames": int(n_frames),
                "clinician_scores": " ".join(str(int(c)) for c in clinician_scores),
                "zone": zone,
            }
            | extra
        )
        return VideoRecord(
            video_id,
            patient_id,
            probe,
            hospital,
            full,
            float(fps),
            int(n_frames),
            None,
            [int(c) for c in clinician_scores],
            {},
            scanner,
            zone,
            extra,
            str(self.root),
        )

    def labels(self) -> dict[str, Any]:
        """The ``labels`` block :meth:`close` writes (what the added videos carry)."""
        raters = max((len(r["clinician_scores"].split()) for r in self.rows), default=0)
        if "clips" in self._kinds:
            return {"frame_scores": False, "video_raters": raters, "masks": False}
        return {"frame_scores": True, "video_raters": raters, "masks": self._masks}

    def close(self, splits: dict[str, list[str]] | None = None) -> None:
        extra_cols = sorted({k for r in self.rows for k in r} - set(VIDEO_COLUMNS) - set(OPTIONAL_COLUMNS))
        fields = list(VIDEO_COLUMNS)
        if "clips" in self._kinds or any(r.get("zone") for r in self.rows):
            fields += OPTIONAL_COLUMNS
        with (self.root / "videos.csv").open("w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=fields + extra_cols, restval="")
            wr.writeheader()
            wr.writerows(self.rows)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "n_videos": len(self.rows),
            "n_patients": len({r["patient_id"] for r in self.rows}),
            "labels": self.labels(),
        } | self.info
        (self.root / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        if splits is not None:
            (self.root / "splits.json").write_text(json.dumps(splits, indent=2) + "\n")
