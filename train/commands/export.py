"""``lus-train export``: a trained frame model → ONNX + manifest for the runtime.

    lus-train export runs/regstn --out models/frame/regstn.onnx --name regstn-cpu-lite --version 1.0.0 \\
        --metrics results/table1/results.json --data-description "synthetic, 48 patients"

Checks ONNX Runtime against PyTorch (max abs diff ≤ 1e-4, else it fails) and writes the manifest
beside the ONNX (same stem, ``.json``) with the model card: training data, synthetic-only flag,
``clinical_use: false``, the reproducing command, and the metrics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from train.commands import load_run


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lus-train export", description="Export a frame model to ONNX + manifest."
    )
    ap.add_argument("run", type=Path, help="run folder of lus-train frame (or its last.pt)")
    ap.add_argument("--out", type=Path, required=True, help="ONNX file to write (manifest goes beside it)")
    ap.add_argument("--name", default="regstn", help="model name in the manifest")
    ap.add_argument("--version", default="0.1.0", help="model version in the manifest")
    ap.add_argument("--metrics", type=Path, help="results.json of lus-train evaluate (metrics for the card)")
    ap.add_argument("--data-description", default="", help="what the model was trained on (model card)")
    ap.add_argument("--real-data", action="store_true", help="trained on real data (default: synthetic only)")
    ap.add_argument("--command", default=None, help="the command that reproduces the model (model card)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from train.frame.export import export_frame_model
    from train.frame.speed import count_gflop

    model, cfg, ckpt, ckpt_path = load_run(args.run)
    run_dir = ckpt_path.parent
    command = args.command
    if command is None and (run_dir / "command.txt").is_file():
        command = (run_dir / "command.txt").read_text().strip()
    metrics: dict = {}
    if args.metrics is not None:
        results = json.loads(args.metrics.read_text())
        mine = [
            r
            for r in results.values()
            if Path(r["run"]).resolve() in (run_dir.resolve(), ckpt_path.resolve())
        ]
        if not mine:
            raise SystemExit(f"{args.metrics}: no results for {run_dir}; run lus-train evaluate on it first")
        metrics = {
            "weighted_f1_percent": {k: round(v["f1"], 2) for k, v in mine[0]["settings"].items()},
            "test_patients": mine[0]["test_patients"],
            "test_frames": mine[0]["test_frames"],
            "evaluated_on": "held-out synthetic patients" if not args.real_data else "held-out patients",
            "baselines": {
                name: round(r["settings"]["Setting 1"]["f1"], 2)
                for name, r in results.items()
                if r is not mine[0]
            },
        }
    training = {
        "data": args.data_description
        or ("synthetic LUS clips (synth simulator)" if not args.real_data else "?"),
        "synthetic_only": not args.real_data,
        "clinical_use": False,
        "command": command or "unknown",
        "note": "Demonstration model trained on synthetic data only. NOT for clinical use."
        if not args.real_data
        else "Research model. NOT for clinical use.",
        "model": cfg.model,
        "config": cfg.to_dict(),
        "epochs": ckpt.get("epoch"),
        "splits": ckpt.get("splits", {}),
    }
    params = {
        "gflop_per_frame": round(count_gflop(model, cfg.input_hw), 4),
        "arch": cfg.arch,
        "width": cfg.width,
        "loc_downsample": cfg.loc_downsample,
        "crop_hw": [cfg.input_hw[0] // 2, cfg.input_hw[1] // 2],
    }
    onnx_path, manifest_path, diff = export_frame_model(
        model, args.out, tuple(cfg.input_hw), args.name, args.version, training, metrics, params
    )
    size = onnx_path.stat().st_size / 1e6
    print(f"{onnx_path} ({size:.2f} MB), manifest {manifest_path}; ORT vs PyTorch max abs diff {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
