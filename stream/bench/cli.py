"""``lus-stream bench`` / ``tools/bench.py``: benchmark the real engine on this machine, in one run.

For each source (a clip, every clip of a folder, or the synthetic live source) and each backend
available here (``onnxruntime``, ``torch`` where the ``NAME.torch.pt2`` artefacts exist,
``tensorrt`` where a plan for this GPU exists) it runs ``lus-stream`` twice — paced at the
source's frame rate (latency view) and ``--as-fast-as-possible`` (throughput view) — with a
separate subscriber process (:mod:`stream.bench.subscriber`), then times in isolation what the
messages cannot show (:mod:`stream.bench.isolated`), measures the thread budget
(:mod:`stream.bench.threads`) and runs the naive PyTorch reference loop (``tools/naive_loop.py``)
on the same source. Results: ``OUT/bench.json`` (+ ``--json FILE``, the contract keys of
:mod:`stream.bench.report`), ``OUT/bench.md``, latency histogram/CDF PNGs, ``samples.npz`` and each
run's engine log, command and results file under ``OUT/runs/``.

    tools/bench.py --clip CLIP --json results/bench.json --out results/latest
    tools/bench.py --synthetic --out results/synthetic

``tools/bench.py triton ...`` (``lus-stream bench triton``) is the served-model benchmark instead: the frame
model behind ``lus-serve`` (Triton) against in-process ONNX Runtime for 1, 2 and 4 concurrent streams
(:mod:`stream.bench.triton`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mpeg", ".mpg", ".mkv", ".gif", ".webm", ".m4v")
BACKENDS = ("onnxruntime", "torch", "tensorrt")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lus-stream bench",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Benchmark the real lus-stream engine (capture process, lanes, aggregator, publisher, "
        "a subscriber process) per stage and end to end, on each available backend, against a naive "
        "PyTorch loop. Writes JSON, Markdown and PNGs.",
        epilog="`%(prog)s triton --help`: the served-model benchmark (lus-serve/Triton against in-process "
        "ONNX Runtime for 1, 2 and 4 concurrent streams).",
    )
    src = p.add_argument_group("sources (at least one)")
    src.add_argument(
        "--clip", action="append", type=Path, default=[], metavar="FILE", help="a video clip (repeatable)"
    )
    src.add_argument("--clips", type=Path, default=None, metavar="DIR", help="every video clip in a folder")
    src.add_argument("--synthetic", action="store_true", help="the synthetic live source (simulator)")
    src.add_argument("--synthetic-frames", type=int, default=300, help="frames per synthetic run")
    src.add_argument("--synthetic-fps", type=float, default=30.0, help="paced rate of the synthetic source")
    src.add_argument(
        "--fps",
        type=float,
        default=None,
        help="paced playback rate for clips (default: each clip's own rate)",
    )
    src.add_argument("--max-frames", type=int, default=None, help="stop each clip run after this many frames")
    m = p.add_argument_group("what to run")
    m.add_argument(
        "--engines", type=Path, default=REPO / "models", metavar="DIR", help="model folder (frame/, seg/)"
    )
    m.add_argument(
        "--backends",
        default="auto",
        help="comma-separated backends, or auto = every one available here (onnxruntime, torch, tensorrt)",
    )
    m.add_argument(
        "--primary-backend", default="onnxruntime", help="backend whose numbers fill the contract keys"
    )
    m.add_argument("--modes", default="paced,afap", help="paced and/or afap (as fast as possible)")
    m.add_argument(
        "--engine-args", default="", help="extra lus-stream options for every engine run (one string)"
    )
    m.add_argument(
        "--seg-ensemble",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also run the paced view with the segmentation members in DIR (e.g. paper=results/paper-seg), "
        "primary source and backend; repeatable",
    )
    m.add_argument("--no-naive", action="store_true", help="skip the naive PyTorch reference loop")
    m.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="frame checkpoint for the naive loop (else the "
        "exported torch program or the manifest's architecture)",
    )
    m.add_argument("--no-threads", action="store_true", help="skip the thread-budget matrix")
    m.add_argument(
        "--threads-seconds", type=float, default=3.0, help="seconds per thread-matrix configuration"
    )
    m.add_argument("--no-isolated", action="store_true", help="skip the isolated stage timings")
    m.add_argument("--isolated-frames", type=int, default=200, help="frames decoded for the isolated timings")
    m.add_argument("--model-seconds", type=float, default=3.0, help="time budget per model × batch timing")
    m.add_argument(
        "--aggregator-frames", type=int, default=100_000, help="frames for the aggregator benchmark"
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--out", type=Path, default=None, help="results folder (default: results/bench-<UTC time>)"
    )
    o.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the JSON result here")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# ------------------------------------------------------------------------------------- sources
def sources_from_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    """[{label, kind, path, engine_args_paced, engine_args_afap, max_frames}] for every source asked for."""
    from stream.capture import SourceSpec

    clips = list(args.clip)
    if args.clips is not None:
        if not args.clips.is_dir():
            raise SystemExit(f"--clips {args.clips}: not a folder")
        clips += sorted(q for q in args.clips.iterdir() if q.suffix.lower() in VIDEO_SUFFIXES)
    out = []
    for clip in clips:
        if not clip.is_file():
            raise SystemExit(f"--clip {clip}: no such file")
        fps_args = ["--fps", str(args.fps)] if args.fps else []
        out.append(
            {
                "label": clip.name,
                "kind": "clip",
                "path": str(clip.resolve()),
                "args": {
                    "paced": ["--clip", str(clip.resolve()), *fps_args],
                    "afap": ["--clip", str(clip.resolve())],
                },
                "max_frames": args.max_frames,
                "spec": SourceSpec("clip", path=str(clip.resolve()), fps=args.fps),
            }
        )
    if args.synthetic:
        fps = str(args.synthetic_fps)
        out.append(
            {
                "label": "synthetic",
                "kind": "synthetic",
                "path": None,
                "args": {"paced": ["--synthetic", "--fps", fps], "afap": ["--synthetic", "--fps", fps]},
                "max_frames": args.synthetic_frames,
                "spec": SourceSpec("synthetic", fps=args.synthetic_fps),
            }
        )
    if not out:
        raise SystemExit("lus-stream bench: give a source: --clip FILE, --clips DIR or --synthetic")
    return out


# ------------------------------------------------------------------------------------- backends
def available_backends(models: Any, asked: str) -> dict[str, str | None]:
    """backend → None if every model loads on it here, else the reason it cannot run."""
    from engines import load_engine
    from engines.base import BackendUnavailableError, EngineError

    names = BACKENDS if asked == "auto" else tuple(b.strip() for b in asked.split(",") if b.strip())
    manifests = ([models.frame] if models.frame else []) + list(models.seg)
    out: dict[str, str | None] = {}
    for b in names:
        reason = None
        for man in manifests:
            try:
                load_engine(man, backend=b, threads=1).close()
            except (BackendUnavailableError, EngineError, ImportError) as err:
                reason = f"{Path(man).name}: {err}"
                break
        out[b] = reason
    return out


def _onnx_manifests(models: Any) -> dict[str, Path]:
    out = {}
    if models.frame is not None:
        out["frame:" + Path(models.frame).stem] = Path(models.frame)
    for s in models.seg:
        out["seg:" + Path(s).stem] = Path(s)
    return out


# ------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["triton"]:
        from stream.bench import triton

        return triton.main(argv[1:])
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from tqdm import tqdm

    from engines.manifest import load_manifest
    from stream.bench import engine_run, report
    from stream.bench.machine import describe_machine
    from stream.lanes import find_models

    t_start = time.monotonic()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = args.out or (REPO / "results" / f"bench-{stamp}")
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sources_from_args(args)
    engines_dir = args.engines.resolve()
    models = find_models(engines_dir)
    # find_models also lists NAME.torch.json beside NAME.json: keep the ONNX manifests only
    models.seg = [p for p in models.seg if load_manifest(p, verify_file=False)["format"] == "onnx"]
    frames_torch = (
        models.frame is not None and load_manifest(models.frame, verify_file=False)["format"] != "onnx"
    )
    if models.frame is not None and frames_torch:
        models.frame = models.frame.with_name(models.frame.name.replace(".torch.json", ".json"))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if models.frame is None:
        print(
            f"bench: WARNING no frame-score model in {engines_dir}/frame: the scoring lane is off", flush=True
        )
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    notes: list[str] = [] if models.frame is not None else [f"no frame-score model in {engines_dir}/frame"]
    if load_avg is not None and load_avg > 1.5:
        notes.append(
            f"load average {load_avg:.2f} at start (> 1.5): other work shares the CPU; timings are distorted"
        )

    print(f"bench: machine…  (results in {out_dir})", flush=True)
    machine = describe_machine()
    backends = available_backends(models, args.backends)
    runnable = [b for b, why in backends.items() if why is None]
    for b, why in backends.items():
        if why:
            notes.append(f"backend {b} unavailable: {why}")
    if not runnable:
        raise SystemExit(f"lus-stream bench: no backend can run the models in {engines_dir}: {backends}")

    n_steps = (
        len(sources) * len(runnable) * len(modes)
        + (0 if args.no_isolated else 1)
        + (0 if args.no_threads else 1)
        + (0 if args.no_naive else 1)
    )
    bar = tqdm(total=n_steps, desc="bench", unit="step", disable=args.no_progress, file=sys.stderr)
    extra = args.engine_args.split() if args.engine_args else []
    runs: list[dict[str, Any]] = []
    samples: dict[str, dict[str, list[int]]] = {}
    example_msg = None
    for src in sources:
        for backend in runnable:
            staged = engine_run.stage_engines(engines_dir, backend, out_dir / "staged" / backend)
            for mode in modes:
                bar.set_description(f"{src['label'][:24]} {backend} {mode}")
                run = engine_run.EngineRun(
                    label=src["label"],
                    source_args=src["args"][mode],
                    mode=mode,
                    backend=backend,
                    engines_dir=staged,
                    max_frames=src["max_frames"],
                    extra_args=extra,
                )
                frames_bar = tqdm(
                    desc="  frames", unit="fr", leave=False, disable=args.no_progress, file=sys.stderr
                )
                workdir = out_dir / "runs" / f"{_safe(src['label'])}-{backend}-{mode}"
                try:
                    res = engine_run.run_engine(run, workdir, frames_bar)
                except RuntimeError as err:
                    notes.append(f"run {src['label']} {backend} {mode} failed: {err}")
                    frames_bar.close()
                    bar.update(1)
                    continue
                frames_bar.close()
                res["source"] = src["label"]
                key = f"{src['label']}/{backend}/{mode}"
                samples[key] = res.pop("samples")
                msg = res.pop("example_frame_msg", None)
                example_msg = example_msg or msg
                runs.append(res)
                bar.update(1)

    primary = args.primary_backend if args.primary_backend in runnable else runnable[0]
    ensembles: dict[str, Any] = {}
    for item in args.seg_ensemble:
        label, _, folder = item.partition("=")
        if not folder or not Path(folder).is_dir():
            notes.append(f"--seg-ensemble {item}: give LABEL=DIR with DIR a folder of segmentation manifests")
            continue
        bar.set_description(f"segmentation ensemble {label}")
        src = sources[0]
        staged = engine_run.stage_engines(
            engines_dir, primary, out_dir / "staged" / f"seg-{label}", Path(folder)
        )
        run = engine_run.EngineRun(
            label=src["label"], source_args=src["args"]["paced"], mode="paced", backend=primary,
            engines_dir=staged, max_frames=src["max_frames"], extra_args=extra,
        )  # fmt: skip
        try:
            res = engine_run.run_engine(run, out_dir / "runs" / f"seg-{_safe(label)}-paced")
        except RuntimeError as err:
            notes.append(f"segmentation ensemble {label} failed: {err}")
            bar.update(1)
            continue
        res.pop("samples")
        res.pop("example_frame_msg", None)
        ensembles[label] = {
            "dir": str(folder), "model": res["lanes"].get("segmentation", {}).get("model"),
            "fps": res["segmentation"]["fps"], "runs": res["segmentation"]["runs"],
            "infer": res["segmentation"]["stages"]["infer"],
            "scoring_p99_ms": res["scoring"]["end_to_end"]["p99_ms"],
            "scoring_drops": res["scoring"]["drops"]["total"],
        }  # fmt: skip
        bar.update(1)

    iso: dict[str, Any] = {}
    if not args.no_isolated:
        bar.set_description("isolated stages")
        iso = isolated_stages(args, sources[0], models, runnable, machine, example_msg)
        bar.update(1)
    thr = None
    if not args.no_threads and models.frame is not None:
        bar.set_description("thread budget")
        thr = thread_budget(args, sources[0], models)
        bar.update(1)
    naive = None
    if not args.no_naive and models.frame is not None:
        bar.set_description("naive loop")
        src = sources[0]
        nargs = ["--clip", src["path"]] if src["kind"] == "clip" else ["--synthetic", str(src["max_frames"])]
        naive = engine_run.run_naive(
            models.frame,
            nargs,
            out_dir / "runs" / "naive",
            models.aggregator,
            args.checkpoint,
            src["max_frames"],
        )
        bar.update(1)
    bar.close()

    result: dict[str, Any] = {
        "schema": "lus-stream-bench/1",
        "created_utc": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "command": "tools/bench.py " + " ".join(list(sys.argv[1:] if argv is None else argv)),
        "load_average_start": load_avg,
        "machine": machine,
        "models": {
            "frame": str(models.frame) if models.frame else None,
            "seg": [str(s) for s in models.seg],
            "aggregator": str(models.aggregator) if models.aggregator else None,
        },
        "backends": backends,
        "sources": [{k: v for k, v in s.items() if k != "spec"} for s in sources],
        "runs": runs,
        "isolated": iso,
        "threads": thr,
        "naive": naive,
        "notes": notes,
        "bench_wall_s": round(time.monotonic() - t_start, 1),
    }
    result["contract"] = report.contract(result, primary)
    result["contract"]["segmentation_lane"]["ensembles"] = ensembles
    result |= {k: v for k, v in result["contract"].items()}
    result["targets"] = report.targets(result["contract"])
    files = report.write_report(result, out_dir, args.json, samples)
    print(_summary_text(result), flush=True)
    print(f"bench: wrote {', '.join(str(p) for p in files.values())}", flush=True)
    return 0


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _summary_text(result: dict[str, Any]) -> str:
    lines = ["", "target | wanted | measured | met"]
    for t in result["targets"]:
        lines.append(f"{t['target']} | {t['wanted']} | {t['measured']} | {t['met']}")
    return "\n".join(lines)


def isolated_stages(
    args: argparse.Namespace,
    src: dict[str, Any],
    models: Any,
    backends: list[str],
    machine: dict[str, Any],
    example_msg: dict[str, Any] | None,
) -> dict[str, Any]:
    from engines.manifest import load_manifest
    from stream import wire
    from stream.aggregate import load_neutral_elements
    from stream.bench import isolated

    info, frames = isolated.decode_and_roi(src["spec"], args.isolated_frames)
    out: dict[str, Any] = {"source": src["label"], **info}
    specs = {}
    if models.frame is not None:
        specs["frame"] = load_manifest(models.frame, verify_file=False)["preprocessing"]
    if models.seg:
        specs["seg"] = load_manifest(models.seg[0], verify_file=False)["preprocessing"]
    out["preprocess"] = isolated.preprocess_times(frames, specs) if frames else {}
    peak = machine.get("matmul_fp32_gflops")
    out["models"] = {}
    for backend in backends:
        per: dict[str, Any] = {}
        for name, man in _onnx_manifests(models).items():
            batches = (1, 4, 8) if name.startswith("frame:") else (1,)
            per[name] = isolated.time_model(
                man,
                backend,
                frames,
                threads=1,
                batches=batches,
                budget_s=args.model_seconds,
                peak_gflops=peak,
            )
        out["models"][backend] = per
    if models.frame is not None and frames:
        from engines.manifest import require_model_file
        from stream.lanes import Prepared

        fm = load_manifest(models.frame, verify_file=False)
        feeds = [{"frame": Prepared(f).input(fm["preprocessing"])[0]} for f in frames[:16]]
        out["ort_optimisation"] = isolated.ort_optimisation_levels(
            require_model_file(fm, models.frame), feeds, budget_s=args.model_seconds
        )
    if example_msg is None:
        example_msg, _ = wire.example("frame")
    out["serialise"] = isolated.serialise_times(example_msg, "frame", n=1000)
    neutral = load_neutral_elements(models.aggregator) if models.aggregator else None
    n = max(200, args.aggregator_frames)
    out["aggregator"] = isolated.aggregator_times(neutral, n_total=n, checkpoints=(100, n))
    if n != 100_000:
        out["aggregator"]["update_us_at_100000"] = out["aggregator"][f"update_us_at_{n}"]
        out["aggregator"]["update_us_p99_at_100000"] = out["aggregator"][f"update_us_p99_at_{n}"]
        out["aggregator"]["note"] = f"measured up to {n} frames, not 1e5"
    return out


def thread_budget(args: argparse.Namespace, src: dict[str, Any], models: Any) -> list[dict[str, Any]] | None:
    import numpy as np

    from engines.manifest import load_manifest, require_model_file
    from stream.bench import isolated, threads
    from stream.lanes import Prepared

    _, frames = isolated.decode_and_roi(src["spec"], 16)
    if not frames:
        return None
    fm = load_manifest(models.frame, verify_file=False)
    feeds = [{"frame": Prepared(f).input(fm["preprocessing"])[0]} for f in frames]
    segs = []
    for man in models.seg:
        m = load_manifest(man, verify_file=False)
        x = Prepared(frames[0]).input(m["preprocessing"])[0]
        feed = {m["inputs"][0]["name"]: x}
        mc = (m.get("parameters") or {}).get("mc_dropout")
        if mc:
            feed[mc["input"]] = np.ones((1, *mc["shape"]), dtype=np.float32)
        segs.append((require_model_file(m, man), feed))
    return threads.thread_matrix(require_model_file(fm, models.frame), feeds, segs, args.threads_seconds)


if __name__ == "__main__":
    sys.exit(main())
