"""``lus-train real-cv``: the real-scan protocol — patient-level, score-stratified k-fold CV of frame
models trained from clip-level scores (``train.real.crossval``), one table for every run.

    lus-train real-cv --data runs/data/covid-blues --out runs/real-cv \\
        --methods inherit,mil-uninorm,mil-mean --steps 600 --threads 2

The folds are written to ``OUT/folds.json`` on the first call (seeded) and read on every later one;
each finished (run, fold) is kept on disk and skipped when the command runs again, so a protocol can be
run in pieces (``--only-folds``) and resumed. ``OUT/table.md``, ``OUT/summary.json`` and
``OUT/confusion.png`` cover every run found in OUT.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

DEFAULT_PRETRAINED = "models/demo/frame/regstn.torch.pt2"  # the synthetic-data Reg-STN: pretraining


def _coerce(field: dataclasses.Field, text: str):  # type: ignore[type-arg]
    if text.lower() in ("none", "null"):
        return None
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if kind.startswith("int"):
        return int(text)
    if kind.startswith("float"):
        return float(text)
    return text


def build_config(method: str, sets: list[str], threads: int, steps: int, seed: int):
    from train.real.loop import ClipTrainConfig

    cfg = ClipTrainConfig(
        method=method, threads=threads, steps=steps, seed=seed, pretrained=DEFAULT_PRETRAINED
    )
    fields = {f.name: f for f in dataclasses.fields(ClipTrainConfig)}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or key not in fields or key in ("method", "extra"):
            known = sorted(set(fields) - {"method", "extra"})
            raise SystemExit(f"--set {item!r}: expected key=value with key one of {known}")
        setattr(cfg, key, _coerce(fields[key], text))
    if cfg.pretrained and not Path(cfg.pretrained).is_file():
        raise SystemExit(
            f"{cfg.pretrained}: no pretrained weights there; pass --set pretrained=none to start from scratch"
        )
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="lus-train real-cv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, required=True, help="dataset folder with clip scores (lus-train import)"
    )
    ap.add_argument("--cache", type=Path, help="decoded-frame cache (.npz; default OUT/../<dataset>-128.npz)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--methods",
        default="inherit,mil-uninorm,mil-mean",
        help="comma list of inherit, mil-uninorm, mil-mean",
    )
    ap.add_argument("--tag", default="", help="suffix of the run names (e.g. -scratch)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a ClipTrainConfig field, e.g. pretrained=none",
    )
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="folds and training seed")
    ap.add_argument("--only-folds", default="", help="comma list of fold indices (default: all)")
    ap.add_argument("--steps", type=int, default=800, help="optimiser steps per fold (the compute budget)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the only thread setting used)")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--summary-only", action="store_true", help="only rebuild the table from finished folds")
    ap.add_argument("--quiet", action="store_true", help="no progress bars (one line per evaluation)")
    args = ap.parse_args(argv)

    from train.data.folds import read_folds, stratified_patient_folds, write_folds
    from train.real import crossval
    from train.real.cache import clips_from_layout, load_or_build

    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        configs = {
            m + args.tag: build_config(m, args.set, args.threads, args.steps, args.seed) for m in methods
        }
        input_hw = tuple(next(iter(configs.values())).frame_config().input_hw)
        clips = clips_from_layout(args.data)
        cache_path = args.cache or args.out.parent / f"{args.data.name}-{input_hw[0]}.npz"
        cache = load_or_build(cache_path, clips, input_hw, progress=not args.quiet)
        folds_file = args.out / "folds.json"
        if folds_file.is_file():
            folds = read_folds(folds_file)
        else:
            folds = stratified_patient_folds(cache.patients, cache.labels.tolist(), k=args.k, seed=args.seed)
            write_folds(folds_file, folds, seed=args.seed, dataset=str(args.data))
        from train.data.folds import check_folds

        problems = check_folds(folds, sorted(set(cache.patients)))
        if problems:
            raise SystemExit(f"{folds_file}: " + "; ".join(problems))
        which = [int(x) for x in args.only_folds.split(",") if x.strip()] or list(range(len(folds)))
        t0 = time.monotonic()
        for k in which:
            for name, cfg in configs.items():
                r = crossval.run_fold(
                    cache, folds, k, name, cfg, args.out, args.val_fraction, progress=not args.quiet
                )
                e = r["metrics"]["engine"]
                print(
                    f"{name} fold {k}: engine F1 {e['f1']:.3f} QWK {e['kappa']} AUC {e['auc']} "
                    f"(train {r['train_seconds']:.0f}s; elapsed {time.monotonic() - t0:.0f}s)",
                    flush=True,
                )
    results = [json.loads(p.read_text()) for p in sorted(args.out.glob("*/fold*/result.json"))]
    if not results:
        raise SystemExit(f"{args.out}: no finished folds yet")
    summ = crossval.summary(results)
    (args.out / "summary.json").write_text(json.dumps(summ, indent=1))
    table = crossval.markdown_table(summ)
    (args.out / "table.md").write_text(table + "\n")
    from train.aggregator.metrics import plot_confusions

    plot_confusions(
        crossval.pooled_confusions(results),
        args.out / "confusion.png",
        title="clip score as the engine publishes it, pooled over folds",
    )
    print(table)
    return 0
