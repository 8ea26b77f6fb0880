"""Install check: lus-stream as a user gets it, outside the repository.

Steps (each prints one line; the first failure stops with a message naming what broke):

1. build a wheel of the project (``pip wheel --no-deps``);
2. install it into a fresh virtual environment, without extras;
3. the runtime is torch-free: ``stream``, ``engines``, ``synth`` import and ``torch`` is not installed;
4. ``pip check`` is clean (no broken or conflicting requirements);
5. from a folder outside the repository, ``lus-stream --clip CLIP --as-fast-as-possible --record DIR``
   with no ``--engines``: the models must come with the package;
6. the recording: every captured frame after the ROI search carries a score 0–3 and four probabilities,
   the last ``video`` message a clip score, and both lanes (scoring, segmentation) were on and ran the
   installed models.

    python tools/check_install.py [--clip CLIP] [--venv /tmp/lus-install-venv]

The default clip is a real one from ``../shared/data/real-clips`` (``LUS_REAL_CLIPS``); without it, the
check stops with exit 2 and says so (it never passes on a missing input).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = "pocus__Pneu_prospective_file3.mp4"  # 151 frames, 25 fps, linear probe

# Run by the installed interpreter, from outside the repository: reads the recording with the installed
# package's own reader and checks it. Prints one summary line; exits non-zero with the reason.
VERIFY = textwrap.dedent('''
    import sys
    from pathlib import Path
    from stream.recorder import read_results

    files = sorted(Path(sys.argv[1]).rglob("*.lusr.msgpack"))
    if len(files) != 1:
        sys.exit(f"expected one recording in {sys.argv[1]}, found {len(files)}")
    rec = read_results(files[0], validate=True)
    frames, videos, status = rec.topic("frame"), rec.topic("video"), rec.topic("status")
    if not frames or not videos or not status:
        sys.exit(f"recording lacks messages: {len(frames)} frame, {len(videos)} video, {len(status)} status")
    last = status[-1].msg
    held = last["drops"].get("roi_search", 0)
    expected = int(sys.argv[2]) - held
    seqs = [r.msg["seq"] for r in frames]
    if seqs != list(range(held, held + expected)):
        sys.exit(f"frames not lossless: {len(seqs)} scored, expected seq {held}..{held + expected - 1}")
    bad = [r.msg["seq"] for r in frames
           if r.msg.get("score") not in (0, 1, 2, 3) or len(r.msg.get("probs") or []) != 4]
    if bad:
        sys.exit(f"{len(bad)} frame(s) without a score, first seq {bad[0]}")
    lanes = last["lanes"]
    off = [name for name in ("scoring", "segmentation") if not lanes[name]["enabled"]]
    if off:
        sys.exit(f"lane(s) off after a default install: {off}: {[lanes[n]['reason'] for n in off]}")
    if videos[-1].msg.get("score") not in (0, 1, 2, 3):
        sys.exit("the last video message has no clip score")
    import lus_stream_models
    installed = Path(lus_stream_models.__file__).parent
    print(f"  {len(frames)} frames scored (+{held} ROI search), clip score {videos[-1].msg['score']}, "
          f"scoring {lanes['scoring']['model']} ({lanes['scoring']['domain']}), "
          f"segmentation {lanes['segmentation']['model']}, models from {installed}")
''')


def step(title: str) -> None:
    print(f"check-install: {title}", flush=True)


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"check-install: FAILED {what} (exit {out.returncode}):\n"
                 f"{out.stdout[-3000:]}{out.stderr[-3000:]}")
    return out


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def clip_frames(clip: Path) -> int:
    """Frame count from the real-clips index (its `frames` column), else by decoding with OpenCV."""
    index = clip.parent / "index.csv"
    if index.is_file():
        import csv

        with open(index) as f:
            for row in csv.DictReader(f):
                if row["file"] == clip.name:
                    return int(row["frames"])
    import cv2

    cap, n = cv2.VideoCapture(str(clip)), 0
    while cap.read()[0]:
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    real_clips = Path(os.environ.get("LUS_REAL_CLIPS", REPO.parent / "shared" / "data" / "real-clips"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", type=Path, default=real_clips / DEFAULT_CLIP, help="clip to stream")
    p.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "lus-install-venv")
    p.add_argument("--python", default=shutil.which("python3.11") or sys.executable,
                   help="interpreter that creates the virtual environment")
    args = p.parse_args(argv)
    if not args.clip.is_file():
        print(f"check-install: the clip {args.clip} does not exist: set LUS_REAL_CLIPS to the real-clips "
              "folder or pass --clip", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="lus-check-install-") as tmp:
        work = Path(tmp)
        step("building the wheel")
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(REPO)],
            "pip wheel", cwd=work)
        shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools' staging folder
        wheel = next((work / "dist").glob("lus_stream-*.whl"))
        step(f"installing {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB) into a clean venv {args.venv}")
        shutil.rmtree(args.venv, ignore_errors=True)
        run([args.python, "-m", "venv", str(args.venv)], "venv")
        py, bin_dir = args.venv / "bin" / "python", args.venv / "bin"
        run([str(py), "-m", "pip", "install", "-q", str(wheel)], "pip install of the wheel", cwd=work)

        step("runtime imports without torch")
        run([str(py), "-c", "import importlib.util, stream, engines, synth, stream.cli, stream.view.cli; "
             "assert importlib.util.find_spec('torch') is None, 'torch leaked into the runtime install'"],
            "torch-free import", cwd=work)
        step("pip check")
        run([str(py), "-m", "pip", "check"], "pip check", cwd=work)

        step(f"lus-stream --clip {args.clip.name} from {work} (no --engines: the installed models)")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env |= {"OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
        run([str(bin_dir / "lus-stream"), "--clip", str(args.clip.resolve()), "--as-fast-as-possible",
             "--record", "rec", "--pub", free_endpoint(), "--ctrl", "none", "--seg-every", "10"],
            "lus-stream --clip", cwd=work, env=env, timeout=300)
        step("checking the recording")
        out = run([str(py), "-c", VERIFY, str(work / "rec"), str(clip_frames(args.clip))], "recording check",
                  cwd=work, env=env)
        print(out.stdout, end="")
    step("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
