"""``lus-train real-fit``: train the shipped frame model and clip aggregator on every patient of a
clip-scored dataset, with the settings of one ``real-cv`` run, and export them for the runtime.

    lus-train real-fit --data data/covid-blues --cv runs/real-cv --run mil-uninorm \\
        --out runs/real-final --export models/frame --version 2.0.0

The procedure is the one the cross-validation measured, on all patients: a stratified validation
split of them chooses the model state (and fits the aggregator of methods that do not learn one), the
rest train. ``--export DIR`` writes ``regstn.onnx`` (+ ``.torch.pt2``) with its manifest (training
domain "real", the dataset and licence, the CV table of that run as its metrics) and
``aggregator.json`` with the neutral elements (learned end to end for ``mil-uninorm``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

COVID_BLUES = {
    "dataset": "COVID-BLUES (Maastricht UMC+, Philips Lumify convex, 48 patients, 273 clips; clip scores by "
    "two experts)",
    "licence": "trained on CC BY-NC-ND 4.0 data (Wiedemann et al., IEEE JBHI 29(9):6301-6310, 2025, "
    "doi:10.1109/JBHI.2025.3543686): weights for non-commercial research use only",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="lus-train real-fit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, required=True, help="clip-scored dataset folder (lus-train import)")
    ap.add_argument("--cache", type=Path, help="decoded-frame cache (default: the one real-cv used)")
    ap.add_argument("--cv", type=Path, required=True, help="the real-cv output folder")
    ap.add_argument("--run", required=True, help="the real-cv run whose settings and CV numbers to ship")
    ap.add_argument("--out", type=Path, required=True, help="training folder (checkpoint, history)")
    ap.add_argument(
        "--export", type=Path, help="folder to write regstn.onnx, its manifest and aggregator.json"
    )
    ap.add_argument("--version", default="2.0.0")
    ap.add_argument("--name", default="regstn-real-cpu-lite")
    ap.add_argument("--dataset", default=COVID_BLUES["dataset"])
    ap.add_argument("--licence", default=COVID_BLUES["licence"])
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    import numpy as np

    from train.data.folds import validation_split
    from train.real.cache import clips_from_layout, load_or_build
    from train.real.crossval import fit_neutral_elements, score_clips
    from train.real.loop import ClipTrainConfig, load_clip_checkpoint, train_clip_model

    results = sorted(args.cv.glob(f"{args.run}/fold*/result.json"))
    if not results:
        raise SystemExit(f"{args.cv}/{args.run}: no finished CV folds; run `lus-train real-cv` first")
    cfg_dict = json.loads(results[0].read_text())["config"]
    cfg = ClipTrainConfig(**cfg_dict)
    summary_file = args.cv / "summary.json"
    summary = json.loads(summary_file.read_text()).get(args.run) if summary_file.is_file() else None
    clips = clips_from_layout(args.data)
    input_hw = tuple(cfg.frame_config().input_hw)
    cache_path = args.cache or args.cv.parent / f"{args.data.name}-{input_hw[0]}.npz"
    cache = load_or_build(cache_path, clips, input_hw, progress=not args.quiet)
    patients = sorted(set(cache.patients))
    fit_p, val_p = validation_split(patients, cache.patients, cache.labels, args.val_fraction, seed=cfg.seed)
    fit_ids, val_ids = cache.clip_indices(fit_p), cache.clip_indices(val_p)
    trained = train_clip_model(cfg, cache, fit_ids, val_ids, args.out, progress=not args.quiet, label="final")
    model, ckpt = load_clip_checkpoint(trained["checkpoint"])
    if cfg.method == "mil-uninorm":
        es, tau = ckpt["head"]["neutral_elements"], ckpt["head"]["temperature"]
    else:
        _, val_probs, _ = score_clips(model, cache, val_ids)
        es, tau = fit_neutral_elements(val_probs, cache.labels[val_ids]), 1.0
    (args.out / "final.json").write_text(
        json.dumps(
            {
                "run": args.run,
                "config": cfg_dict,
                "neutral_elements": es,
                "temperature": tau,
                "best_step": trained["best_step"],
                "patients": {"fit": fit_p, "validation": val_p},
            },
            indent=1,
        )
    )
    print(
        f"trained on {len(fit_p)} patients, state chosen on {len(val_p)}: step {trained['best_step']}; "
        f"neutral elements {np.round(es, 4).tolist()}, temperature {tau:.3f}"
    )
    if args.export is None:
        return 0
    from train.aggregator.manifest import aggregator_manifest, write_aggregator_manifest
    from train.frame.export import export_frame_model, model_parameters

    command = "lus-train real-fit " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    provenance = {"domain": "real", "dataset": args.dataset, "licence": args.licence}
    data = f"{args.dataset}; {len(patients)} patients, {len(cache)} clips, clip-level scores only"
    metrics = {
        "cross_validation": summary,
        "protocol": f"patient-level stratified {len(results)}-fold CV "
        "(lus-train real-cv); clip score as the engine publishes it = 'engine'",
    }
    fcfg = cfg.frame_config()
    training = {
        "data": data,
        "synthetic_only": False,
        "clinical_use": False,
        **provenance,
        "command": command,
        "note": "Research model trained on one device (Philips Lumify, convex) in one study. "
        "NOT for clinical use; non-commercial research use only (training-data licence).",
        "model": fcfg.model,
        "config": fcfg.to_dict(),
        "clip_training": cfg_dict,
        "splits": {"fit": fit_p, "validation": val_p},
    }
    params = model_parameters(model, fcfg)
    args.export.mkdir(parents=True, exist_ok=True)
    onnx_path, manifest_path, diff = export_frame_model(
        model,
        args.export / "regstn.onnx",
        tuple(fcfg.input_hw),
        args.name,
        args.version,
        training,
        metrics,
        params,
    )
    agg = aggregator_manifest(
        es,
        data=data,
        synthetic_only=False,
        command=command,
        metrics=metrics,
        name="uninorm-aggregator-real",
        version=args.version,
        training_extra={
            **provenance,
            "method": (
                "learned end to end with the frame model from clip scores (MIL through the uninorm layer)"
                if cfg.method == "mil-uninorm"
                else "Roy et al. 2020 §IV-B published procedure on the validation patients' "
                "frame probabilities"
            ),
            "temperature": tau,
        },
    )
    agg["parameters"]["temperature"] = float(tau)
    write_aggregator_manifest(agg, args.export / "aggregator.json")
    print(f"{onnx_path} + {manifest_path} (ORT vs PyTorch {diff:.1e}); {args.export / 'aggregator.json'}")
    return 0
