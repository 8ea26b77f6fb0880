"""Import real clip collections (one severity score 0-3 per clip) into the dataset layout.

Public lung-ultrasound collections give one score per clip (the clip's worst finding, Soldati
scale), usually from one rater, with no frame scores and no masks. :func:`import_clips` writes such
a collection as a clip-level dataset (``dataset.json`` ``labels: {frame_scores: false,
video_raters: N, masks: false}``, ``synthetic: false``): one ``videos.csv`` row per clip with its
patient, zone, score and the source's further columns (``extra``), and ``fps`` / ``n_frames``
measured from the container (PyAV: the stream's average rate; every frame decoded and counted), so
the layout is truthful. What the source does not say stays unknown (frame scores ``None``, empty
hospital / scanner) rather than invented.

Presets (``auto`` picks one from what SRC holds):

- ``covid-blues-github``: the public repository's layout (github.com/NinaWie/COVID-BLUES):
  ``SRC/lus_videos/patient_<ID>_<POINT>[_2].mp4``, ``SRC/severity.csv`` (``video_file``,
  ``Severity Score``, ``A-lines``, ``B-lines``, ``comments``) and ``SRC/clinical_variables.csv``
  (``patient_id``, ``cov_test``, ...). Patient and zone come from the file name; ``_2`` is a
  second recording of the same zone (``extra["repeat"] = "2"``).
- ``covid-blues-index``: the shared copy (``SRC/index.csv`` with file, patient_id, zone, repeat,
  label, a_lines, b_lines, cov_test, ..., and ``SRC/videos/``).
- ``csv``: a generic CSV index given as SRC (or ``SRC/index.csv``): ``file`` (relative to the
  CSV's folder, or absolute), ``patient``, ``score``; optional ``zone``, ``probe``, ``hospital``,
  ``scanner`` and further raters' scores ``score2``, ``score3``, ...; other columns go to ``extra``.

Ids: a video id is the file's stem (``patient_10_L1``, ``patient_15_L2_2``; other characters than
letters, digits and ``_.-`` become ``_``). Patient ids are kept as the source's strings, except that
a purely numeric id is written ``P<number>`` without leading zeros (COVID-BLUES patient 10 and
"010" both become ``P10``), the same in every preset.

Clips are referenced in place by absolute path; ``copy=True`` copies the bytes unchanged
(``shutil.copy2``) to ``ROOT/<patient>/<video_id>.mp4``; nothing is ever re-encoded. Bad input
(missing or undecodable video, score not a number or outside 0-3, missing patient id, duplicate
clip, missing columns) raises :class:`ImportProblems` listing every problem, and nothing is
written: the dataset is built in a temporary folder beside ``out`` and renamed at the end.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .layout import _ID, OPTIONAL_COLUMNS, VIDEO_COLUMNS, LayoutWriter, check_dataset

PRESETS = ("auto", "covid-blues-github", "covid-blues-index", "csv")
PROBES = ("convex", "linear")

COVID_BLUES: dict[str, str] = {
    "licence": "CC BY-NC-ND 4.0 (https://creativecommons.org/licenses/by-nc-nd/4.0/): attribution, "
    "non-commercial use only, no redistribution of modified copies",
    "attribution": 'N. Wiedemann et al., "COVID-BLUeS - A Prospective Study on the Value of AI in Lung '
    'Ultrasound Analysis", IEEE J. Biomed. Health Inform. 29(9):6301-6310, 2025, '
    "doi:10.1109/JBHI.2025.3543686; data: github.com/NinaWie/COVID-BLUES",
    "probe": "convex",
    "hospital": "Maastricht UMC+",
    "scanner": "Philips Lumify",
}
LABEL_NOTE = (
    "one severity score 0-3 per clip (the clip's worst finding), no frame scores, no masks; "
    "frames' scores are unknown, not zero"
)
_COVID_NAME = re.compile(r"^patient_(\d+)_([LR][1-3])(?:_(\d+))?$")


class ImportProblems(ValueError):
    """The source cannot be imported; ``problems`` lists every problem found (nothing was written)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s); nothing was written:\n  " + "\n  ".join(self.problems)
        )


@dataclass
class SourceClip:
    """One clip as the source describes it (``where`` names the row, for problem messages)."""

    where: str
    file: Path
    patient_id: str
    video_id: str
    scores: list[int]
    zone: str = ""
    probe: str = ""
    hospital: str = ""
    scanner: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    fps: float = 0.0
    n_frames: int = 0


# ----------------------------------------------------------------------------------------------
# Small parsers
# ----------------------------------------------------------------------------------------------


def patient_key(raw: str) -> str:
    """The layout's patient id for a source id: ``P<n>`` for a numeric id, else the id itself."""
    raw = (raw or "").strip()
    if re.fullmatch(r"\d+(\.0+)?", raw):
        return f"P{int(float(raw))}"
    return raw


def video_key(path: str | Path) -> str:
    """The layout's video id for a file: its stem with other characters than ``[A-Za-z0-9_.-]`` → _."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)
    return stem if not stem or stem[0].isalnum() else "v" + stem


def parse_score(text: str | None) -> int:
    """A clip score 0-3 from text such as ``2`` or ``2.0``; ValueError saying what is wrong."""
    t = (text or "").strip()
    if not t:
        raise ValueError("missing score")
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f"score {t!r} is not a number") from None
    if not value.is_integer() or not 0 <= value <= 3:
        raise ValueError(f"score {t!r} is outside 0-3 (must be 0, 1, 2 or 3)")
    return int(value)


def _yes_no(text: str | None) -> str:
    t = (text or "").strip().lower()
    return {"yes": "1", "no": "0", "1": "1", "0": "0", "1.0": "1", "0.0": "0"}.get(t, t)


def _read_csv(path: Path, need: Iterable[str], problems: list[str]) -> list[dict[str, str]] | None:
    """Rows of a CSV (header names stripped), or None with a problem when unreadable / columns miss."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [(f or "").strip() for f in reader.fieldnames or []]
            reader.fieldnames = fields
            rows = [{k: (v or "") for k, v in r.items() if k is not None} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"{path}: cannot read the CSV: {exc}")
        return None
    missing = [c for c in need if c not in fields]
    if missing:
        problems.append(f"{path}: missing columns {missing} (has {fields})")
        return None
    return rows


# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------


def detect_preset(src: Path) -> str:
    """The preset whose files SRC holds; ValueError naming what was looked for otherwise."""
    if src.is_file() and src.suffix.lower() == ".csv":
        return "csv"
    if (src / "severity.csv").is_file() and (src / "lus_videos").is_dir():
        return "covid-blues-github"
    if (src / "index.csv").is_file():
        with (src / "index.csv").open(newline="", encoding="utf-8-sig") as fh:
            header = {h.strip() for h in next(csv.reader(fh), [])}
        if {"file", "patient_id", "label"} <= header and (src / "videos").is_dir():
            return "covid-blues-index"
        if {"file", "patient", "score"} <= header:
            return "csv"
    raise ValueError(
        f"{src}: cannot tell the preset: expected severity.csv + lus_videos/ (covid-blues-github), "
        "index.csv with file,patient_id,label + videos/ (covid-blues-index), or a CSV file with "
        "file,patient,score (csv)"
    )


def _keep(patient: str, wanted: set[str] | None) -> bool:
    return wanted is None or patient in wanted


def read_covid_blues_github(
    src: Path, problems: list[str], wanted: set[str] | None = None
) -> list[SourceClip]:
    """Clips of the public COVID-BLUES repository layout (see the module docstring); only the
    patients in ``wanted`` (layout ids) when given."""
    sev = _read_csv(src / "severity.csv", ("video_file", "Severity Score"), problems)
    cov: dict[str, str] = {}
    clin_path = src / "clinical_variables.csv"
    if clin_path.is_file():
        clin = _read_csv(clin_path, ("patient_id", "cov_test"), problems)
        for r in clin or []:
            cov[patient_key(r["patient_id"])] = r["cov_test"].strip()
    if sev is None:
        return []
    videos = src / "lus_videos"
    out: list[SourceClip] = []
    listed: set[str] = set()
    for line, r in enumerate(sev, start=2):
        where = f"{src / 'severity.csv'} line {line}"
        stem = r["video_file"].strip().removesuffix(".mp4")
        listed.add(stem)
        m = _COVID_NAME.match(stem)
        if m and not _keep(patient_key(m.group(1)), wanted):
            continue
        if not m:
            problems.append(
                f"{where}: cannot read patient and zone from {stem!r} (expected patient_<ID>_<L1..R3>[_2])"
            )
            continue
        try:
            scores = [parse_score(r["Severity Score"])]
        except ValueError as exc:
            problems.append(f"{where} ({stem}): {exc}")
            scores = []
        pid = patient_key(m.group(1))
        extra = {
            "repeat": m.group(3) or "1",
            "a_lines": _yes_no(r.get("A-lines")),
            "b_lines": _yes_no(r.get("B-lines")),
            "comments": (r.get("comments") or "").strip(),
        }
        if pid in cov:
            extra["cov_test"] = cov[pid]
        out.append(SourceClip(where, videos / f"{stem}.mp4", pid, stem, scores, m.group(2), extra=extra))
    if videos.is_dir():
        for f in sorted(videos.glob("*.mp4")):
            m = _COVID_NAME.match(f.stem)
            if m and not _keep(patient_key(m.group(1)), wanted):
                continue
            if f.stem not in listed:
                problems.append(f"{f}: clip without a score (no row in {src / 'severity.csv'})")
    return out


def read_covid_blues_index(
    src: Path, problems: list[str], wanted: set[str] | None = None
) -> list[SourceClip]:
    """Clips of the shared COVID-BLUES copy (``index.csv`` + ``videos/``)."""
    rows = _read_csv(src / "index.csv", ("file", "patient_id", "label"), problems)
    out: list[SourceClip] = []
    for line, r in enumerate(rows or [], start=2):
        if not _keep(patient_key(r["patient_id"]), wanted):
            continue
        where = f"{src / 'index.csv'} line {line}"
        name = r["file"].strip()
        try:
            scores = [parse_score(r["label"])]
        except ValueError as exc:
            problems.append(f"{where} ({name}): {exc}")
            scores = []
        extra = {k: r.get(k, "").strip() for k in ("repeat", "a_lines", "b_lines", "cov_test", "comments")}
        out.append(
            SourceClip(
                where,
                src / "videos" / name,
                patient_key(r["patient_id"]),
                video_key(name),
                scores,
                (r.get("zone") or "").strip(),
                extra={k: _yes_no(v) if k in ("a_lines", "b_lines") else v for k, v in extra.items()},
            )
        )
    return out


def read_csv_index(path: Path, problems: list[str], wanted: set[str] | None = None) -> list[SourceClip]:
    """Clips of a generic CSV index (see the module docstring)."""
    rows = _read_csv(path, ("file", "patient", "score"), problems)
    if rows is None:
        return []
    fields = list(rows[0]) if rows else []
    raters = sorted((c for c in fields if re.fullmatch(r"score\d+", c)), key=lambda c: int(c[5:]))
    own = {"file", "patient", "score", "zone", "probe", "hospital", "scanner", *raters}
    reserved = set(VIDEO_COLUMNS) | set(OPTIONAL_COLUMNS)
    out: list[SourceClip] = []
    for line, r in enumerate(rows, start=2):
        if not _keep(patient_key(r["patient"]), wanted):
            continue
        where = f"{path} line {line}"
        name = r["file"].strip()
        if not name:
            problems.append(f"{where}: empty file name")
            continue
        scores = []
        for col in ["score", *raters]:
            try:
                scores.append(parse_score(r[col]))
            except ValueError as exc:
                problems.append(f"{where} ({name}): {col}: {exc}")
        extra = {(f"source_{k}" if k in reserved else k): v.strip() for k, v in r.items() if k not in own}
        out.append(
            SourceClip(
                where,
                Path(name) if Path(name).is_absolute() else path.parent / name,
                patient_key(r["patient"]),
                video_key(name),
                scores,
                (r.get("zone") or "").strip(),
                (r.get("probe") or "").strip().lower(),
                (r.get("hospital") or "").strip(),
                (r.get("scanner") or "").strip(),
                extra,
            )
        )
    return out


# ----------------------------------------------------------------------------------------------
# Checking and writing
# ----------------------------------------------------------------------------------------------


def probe_video(path: Path) -> tuple[float, int]:
    """(fps, frames) of a video file: the stream's average rate, and every frame decoded and counted."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_count = 1
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        n = sum(1 for _ in container.decode(stream))
    if n == 0:
        raise ValueError("no decodable frames")
    if not rate or float(rate) <= 0:
        raise ValueError("the container gives no frame rate")
    return float(rate), n


def _validate(clips: list[SourceClip], problems: list[str]) -> None:
    """Patient ids, probes, duplicates, and decode every video (fills ``fps`` / ``n_frames``)."""
    ids: dict[str, str] = {}
    files: dict[Path, str] = {}
    n_raters = {len(c.scores) for c in clips if c.scores}
    if len(n_raters) > 1:
        problems.append(f"clips have different numbers of scores {sorted(n_raters)}")
    for c in clips:
        if not c.patient_id:
            problems.append(f"{c.where} ({c.file.name}): missing patient id")
        elif not _ID.match(c.patient_id):
            problems.append(f"{c.where}: patient id {c.patient_id!r} must be letters, digits, _.-")
        if not c.video_id:
            problems.append(f"{c.where}: cannot make a video id from {c.file.name!r}")
        if c.probe not in PROBES:
            problems.append(
                f"{c.where} ({c.file.name}): probe {c.probe or '(unknown)'!r} must be convex or linear "
                "(give --probe or a probe column)"
            )
        if c.video_id in ids:
            problems.append(f"{c.where}: duplicate clip: video id {c.video_id} also at {ids[c.video_id]}")
        ids.setdefault(c.video_id, c.where)
        key = c.file.resolve()
        if key in files:
            problems.append(f"{c.where}: duplicate clip: {c.file} is also listed at {files[key]}")
            continue
        files[key] = c.where
        if not c.file.is_file():
            problems.append(f"{c.file}: missing video ({c.where})")
            continue
        try:
            c.fps, c.n_frames = probe_video(c.file)
        except Exception as exc:  # PyAV raises many kinds; any of them means "cannot be used"
            problems.append(f"{c.file}: cannot open or decode the video ({c.where}): {exc}")


def gather(
    src: str | Path,
    preset: str = "auto",
    *,
    hospital: str | None = None,
    probe: str | None = None,
    scanner: str | None = None,
    patients: Iterable[str] | None = None,
) -> tuple[str, list[SourceClip], list[str]]:
    """(preset used, clips with fps / n_frames measured, every problem) — reads only, writes nothing."""
    src = Path(src)
    problems: list[str] = []
    if preset not in PRESETS:
        return preset, [], [f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}"]
    if not src.exists():
        return preset, [], [f"{src}: no such file or folder"]
    if preset == "auto":
        try:
            preset = detect_preset(src)
        except ValueError as exc:
            return preset, [], [str(exc)]
    if probe is not None and probe not in PROBES:
        problems.append(f"--probe {probe!r} must be convex or linear")
    wanted = None if patients is None else {patient_key(p) for p in patients}
    if preset == "csv":
        index = src if src.is_file() else src / "index.csv"
        clips = read_csv_index(index, problems, wanted)
        defaults: dict[str, str] = {}
    elif preset == "covid-blues-github":
        clips, defaults = read_covid_blues_github(src, problems, wanted), COVID_BLUES
    else:
        clips, defaults = read_covid_blues_index(src, problems, wanted), COVID_BLUES
    if wanted is not None:
        found = {c.patient_id for c in clips}
        problems += [f"--patients: patient {p} has no clips in {src}" for p in sorted(wanted - found)]
    for c in clips:
        c.probe = c.probe or probe or defaults.get("probe", "")
        c.hospital = c.hospital or (hospital if hospital is not None else defaults.get("hospital", ""))
        c.scanner = c.scanner or (scanner if scanner is not None else defaults.get("scanner", ""))
    if not clips and not problems:
        problems.append(f"{src}: no clips found ({preset} preset)")
    _validate(clips, problems)
    return preset, clips, problems


def import_clips(
    src: str | Path,
    out: str | Path,
    preset: str = "auto",
    *,
    copy: bool = False,
    name: str | None = None,
    hospital: str | None = None,
    probe: str | None = None,
    scanner: str | None = None,
    patients: Iterable[str] | None = None,
    force: bool = False,
    command: str = "",
) -> dict[str, Any]:
    """Import SRC into the dataset folder ``out``; returns the written ``dataset.json`` content.

    Raises :class:`ImportProblems` listing every problem (nothing written) for bad input, and
    for an existing non-empty ``out`` unless ``force``.
    """
    src, out = Path(src).resolve(), Path(out).resolve()
    problems: list[str] = []
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        problems.append(f"{out}: exists and is not empty (use --force to replace it)")
    if out == src or src.is_relative_to(out):
        problems.append(f"{out}: --out would hold (and replace) the source {src}")
    used, clips, found = gather(
        src, preset, hospital=hospital, probe=probe, scanner=scanner, patients=patients
    )
    problems += found
    if problems:
        raise ImportProblems(problems)
    known = COVID_BLUES if used.startswith("covid-blues") else {}
    info: dict[str, Any] = {
        "synthetic": False,
        "source": str(src),
        "preset": used,
        "clips": "copied" if copy else "referenced in place (absolute paths)",
        "label_note": LABEL_NOTE,
        "command": command,
    }
    if known:
        info |= {"licence": known["licence"], "attribution": known["attribution"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.importing-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        writer = LayoutWriter(tmp, name or out.name, info)
        for c in clips:
            writer.add_clip(
                video_id=c.video_id,
                patient_id=c.patient_id,
                path=c.file,
                fps=c.fps,
                n_frames=c.n_frames,
                probe=c.probe,
                hospital=c.hospital,
                clinician_scores=c.scores,
                zone=c.zone,
                scanner=c.scanner,
                extra=c.extra,
                copy=copy,
            )
        writer.close()
        left = check_dataset(tmp, decode=False)  # every video was decoded above
        if left:
            raise ImportProblems(left)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return json.loads((out / "dataset.json").read_text())
