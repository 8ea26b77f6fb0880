"""``lus-train aggregator``: cross-validate and train the uninorm clip aggregator (paper §IV-B, §V-B).

    lus-train aggregator --frame-probs FILE --folds 5 --seed S --out DIR [--manifest PATH]

Reads per-frame probabilities of labelled clips (any frame model's; format in
``train.aggregator.data``), runs k-fold patient-level cross-validation of the uninorm layer against
``max_argmax`` and ``argmax_mean`` (Tables II/III), then fits the layer on all clips and writes:

- ``DIR/metrics.json``: ``uninorm``/``max_argmax``/``argmax_mean`` → ``f1``/``precision``/``recall`` as
  [mean, std] over folds (weighted), per-fold values, the learned neutral elements per fold, pooled
  confusion matrices, the final fit; also ``uninorm_logit`` (the same layer trained with the logit
  objective, our variant: see ``train.aggregator.training``);
- ``DIR/confusion.png``: the pooled confusion matrices (row-normalised %, counts);
- ``DIR/aggregator.json``: the aggregator manifest (also written to ``--manifest PATH`` if given) that
  ``lus-stream`` reads its neutral elements from.

Training follows the authors' published command by default (30 Adam steps at lr 1e-2 from e = 0, the
last epoch's neutral elements kept: ``--selection last``); ``--selection best-loss`` keeps the
lowest-training-loss epoch with early stopping (``--patience``). The rule is recorded in
``metrics.json`` and in the manifest's ``training.selection``/``training.method``.

``--make-toy FILE`` writes a synthetic frame-probabilities file instead (for trying the command).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from train.aggregator.training import FitConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lus-train aggregator",
        description="Train the uninorm clip aggregator from frame probabilities and compare it with the "
        "max_argmax / argmax_mean baselines by patient-level k-fold cross-validation (Tables II/III).",
    )
    p.add_argument(
        "--frame-probs", type=Path, help='JSON {"videos": [{video_id, patient_id, label, probs, fold?}]}'
    )
    p.add_argument(
        "--folds",
        type=int,
        default=5,
        help="k of the patient-level k-fold CV, if the file gives no folds (default 5)",
    )
    p.add_argument(
        "--patients-from",
        type=Path,
        metavar="JSON",
        help="use only the clips of the patients listed in this JSON file under --patients-key, e.g. the "
        "frame model's splits.json: train the aggregator on patients the frame model never saw "
        "(paper §IV-B.4)",
    )
    p.add_argument(
        "--patients-key", default="test", help="key of the patient list in --patients-from (default test)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the patient-to-fold assignment (default 0)")
    p.add_argument("--out", type=Path, help="output folder for metrics.json, confusion.png, aggregator.json")
    p.add_argument(
        "--epochs", type=int, default=30, help="epochs, one Adam step each (default 30, as published)"
    )
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2, as published)")
    p.add_argument(
        "--selection",
        choices=("last", "best-loss"),
        default="last",
        help="which neutral elements are kept: 'last' = after the last epoch, no early stopping (default, "
        "the authors' published command); 'best-loss' = the epoch with the lowest training loss, with "
        "early stopping after --patience epochs without improvement",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=5,
        help="with --selection best-loss: epochs without a lower training loss before stopping (default 5)",
    )
    p.add_argument(
        "--init", type=float, default=0.0, help="initial neutral elements (default 0, as published)"
    )
    p.add_argument(
        "--objective",
        choices=("published", "logit"),
        default="published",
        help="what the final fit (the manifest) trains: 'published' = softmax of the aggregates (paper); "
        "'logit' = softmax of their logits (our variant for long clips). Both are cross-validated.",
    )
    p.add_argument("--sord-gap", type=float, default=0.5, help="SORD zero gap for clip labels (default 0.5)")
    p.add_argument(
        "--no-temperature", action="store_true",
        help="leave the clip-probability temperature out of the manifest: the engine then publishes the "
        "paper's softmax(v), which flattens towards 0.25 on long clips (default: τ fitted on the held-out "
        "folds, see train/aggregator/temperature.py)",
    )
    p.add_argument(
        "--manifest",
        type=Path,
        help="also write the aggregator manifest here (e.g. models/frame/aggregator.json)",
    )
    p.add_argument(
        "--data-description", help="the manifest's training.data text (default: the frame-probs path)"
    )
    p.add_argument(
        "--synthetic-only", action="store_true", help="mark the manifest as trained on synthetic data only"
    )
    p.add_argument("--dataset", help="the manifest's training.dataset: a short name of the data (in status)")
    p.add_argument("--version", default="1", help="the manifest's version (default 1)")
    p.add_argument(
        "--make-toy",
        type=Path,
        metavar="FILE",
        help="write a toy frame-probabilities file from simulated clips (seeded by --seed) and exit",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _method_text(cfg: FitConfig) -> str:
    """The manifest's training.method: the published recipe and which epoch's neutral elements were kept."""
    head = (f"Roy et al. 2020 §IV-B: SORD (gap {cfg.sord_gap:g}), Adam {cfg.lr:g}, one summed step per "
            f"epoch, {cfg.epochs} epochs, e started at {cfg.init:g}; ")  # fmt: skip
    if cfg.selection == "last":
        return head + "last epoch kept, no early stopping (as published)"
    return head + (f"lowest-training-loss epoch kept, early stopping after {cfg.patience} epochs without "
                   "improvement (our rule)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import torch

    torch.set_num_threads(1)
    from train.aggregator.data import (
        FrameProbsError,
        dump_frame_probs,
        load_frame_probs,
        patients_from_file,
        select_patients,
    )

    if args.make_toy:
        from train.aggregator.toy import toy_clips

        path = dump_frame_probs(toy_clips(seed=args.seed), args.make_toy)
        print(f"wrote toy frame probabilities to {path}")
        return 0
    if args.frame_probs is None or args.out is None:
        print("lus-train aggregator: --frame-probs FILE and --out DIR are required", file=sys.stderr)
        return 2

    from engines.manifest import ManifestError
    from train.aggregator.crossval import cross_validate
    from train.aggregator.folds import assign_folds
    from train.aggregator.manifest import aggregator_manifest, write_aggregator_manifest
    from train.aggregator.metrics import plot_confusions
    from train.aggregator.training import FitConfig, fit_uninorm, mean_sord_loss

    try:
        clips = load_frame_probs(args.frame_probs)
        if args.patients_from is not None:
            source = f"{args.patients_from}[{args.patients_key!r}]"
            clips = select_patients(clips, patients_from_file(args.patients_from, args.patients_key), source)
    except FrameProbsError as exc:
        print(f"lus-train aggregator: {exc}", file=sys.stderr)
        return 2
    try:
        folds, fold_note = assign_folds(clips, args.folds, args.seed)
    except ValueError as exc:
        print(f"lus-train aggregator: {exc}", file=sys.stderr)
        return 2
    cfg = FitConfig(
        lr=args.lr,
        epochs=args.epochs,
        patience=args.patience,
        sord_gap=args.sord_gap,
        init=args.init,
        objective=args.objective,
        selection=args.selection,
    )
    n_patients = len({c.patient_id for c in clips})
    label_counts = dict(sorted(Counter(c.label for c in clips).items()))
    print(f"{len(clips)} clips, {n_patients} patients, labels {label_counts}; "
          f"folds {fold_note}")  # fmt: skip

    cv = cross_validate(clips, folds, cfg, progress=not args.quiet)
    final = fit_uninorm(clips, cfg)
    final_loss = mean_sord_loss(clips, final.neutral_elements, cfg.sord_gap, cfg.objective)
    patients_from = None if args.patients_from is None else f"{args.patients_from}:{args.patients_key}"
    command = "lus-train aggregator " + shlex.join(sys.argv[2:] if argv is None else argv)
    metrics = {
        "uninorm": cv.metrics["uninorm"],
        "max_argmax": cv.metrics["max_argmax"],
        "argmax_mean": cv.metrics["argmax_mean"],
        "uninorm_logit": cv.metrics["uninorm_logit"],
        "neutral_elements_per_fold": cv.metrics["neutral_elements_per_fold"],
        "folds": cv.metrics["folds"],
        "fold_source": fold_note,
        "data": {"file": str(args.frame_probs), "clips": len(clips), "patients": n_patients,
                 "patients_from": patients_from,
                 "frames": int(sum(len(c.probs) for c in clips)),
                 "labels": {str(k): v for k, v in sorted(Counter(c.label for c in clips).items())}},
        "config": vars(cfg),
        "final": {"objective": cfg.objective, "neutral_elements": final.neutral_elements,
                  "selection": cfg.selection, "epochs_run": len(final.losses),
                  "kept_epoch": final.best_epoch, "train_loss": final_loss},
        "command": command,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_confusions(cv.confusions, args.out / "confusion.png",
                    title=f"pooled over {len(set(folds.tolist()))} folds, {len(clips)} clips")  # fmt: skip

    summary = {
        m: {k: metrics[m][k] for k in ("f1", "precision", "recall")}
        for m in ("uninorm", "uninorm_logit", "max_argmax", "argmax_mean")
    }
    try:
        manifest = aggregator_manifest(
            final.neutral_elements,
            data=args.data_description or str(args.frame_probs),
            synthetic_only=args.synthetic_only,
            command=command,
            version=args.version,
            metrics={
                "cross_validation": summary,
                "fold_source": fold_note,
                "clips": len(clips),
                "patients": n_patients,
                "patients_from": patients_from,
            },
            sord_gap=cfg.sord_gap,
            temperature=None if args.no_temperature else cv.metrics["uninorm"]["temperature"],
            training_extra={
                **({"domain": "synthetic"} if args.synthetic_only else {}),
                **({"dataset": args.dataset} if args.dataset else {}),
                "temperature_fit": None if args.no_temperature else (
                    "τ of softmax(τ·logit(v)/n) minimising the NLL of the held-out clips of the "
                    f"{len(set(folds.tolist()))} folds (neutral elements of each fold trained on the "
                    "others): "
                    f"NLL {cv.metrics['uninorm']['held_out_nll']['tau_1']:.3f} at τ=1 → "
                    f"{cv.metrics['uninorm']['held_out_nll']['fitted']:.3f}"),
                "method": _method_text(cfg),
                "selection": cfg.selection,
                "epochs": cfg.epochs,
                "objective": cfg.objective,
                "cross_validated_as": "uninorm" if cfg.objective == "published" else "uninorm_logit",
            },
        )
        write_aggregator_manifest(manifest, args.out / "aggregator.json")
        if args.manifest:
            write_aggregator_manifest(manifest, args.manifest)
    except ManifestError as exc:
        print(f"lus-train aggregator: {exc}", file=sys.stderr)
        return 1

    print(f"{'method':<14} {'F1':>15} {'precision':>15} {'recall':>15}")
    for m, vals in summary.items():
        cells = " ".join(f"{vals[k][0]:>8.3f} ± {vals[k][1]:.3f}" for k in ("f1", "precision", "recall"))
        print(f"{m:<14} {cells}")
    es = [round(e, 4) for e in final.neutral_elements]
    print(f"neutral elements (all clips, {cfg.objective} objective): {es}; clip-probability temperature "
          f"{cv.metrics['uninorm']['temperature']:.3f} (held-out NLL "
          f"{cv.metrics['uninorm']['held_out_nll']['tau_1']:.3f} at τ=1 → "
          f"{cv.metrics['uninorm']['held_out_nll']['fitted']:.3f})")
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'confusion.png'}, {args.out / 'aggregator.json'}"
          + (f", {args.manifest}" if args.manifest else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
