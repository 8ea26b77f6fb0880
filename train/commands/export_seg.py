"""``lus-train export-seg``: ONNX + manifest per member of a trained run, and a model card.

    lus-train export-seg --run runs/seg-lite --out models/seg --version 0.1.0

Each member becomes ``OUT/NAME.onnx`` (inputs ``image``, ``dropout_mask``; output ``probs``;
opset 17, dynamic batch) with ``OUT/NAME.json`` beside it; parity with PyTorch (mask of ones) must
be ≤ 1e-4 or nothing is written. Metrics come from ``RUN/eval/metrics.json`` when
``lus-train evaluate-seg`` has run. ``OUT/MODEL_CARD.md`` summarises data, metrics and limits.
``--domain``/``--dataset``/``--licence`` fill the manifests' ``training.domain``/``dataset``/``licence``
(synthetic by default; see ``train.commands.export``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from train.commands.export import add_domain_options, domain_fields

DEFAULT_DATA = "synthetic LUS (synth simulator), ICLUS-DB-style layout; held-out patients for metrics"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lus-train export-seg", description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="run folder written by `lus-train seg`")
    ap.add_argument("--members", default="unet,unetpp,deeplabv3p")
    ap.add_argument("--checkpoint", default="best.pt")
    ap.add_argument("--out", type=Path, default=Path("models/seg"))
    ap.add_argument("--version", default="0.1.0")
    ap.add_argument("--data-description", default=DEFAULT_DATA)
    ap.add_argument("--real-data", action="store_true", help="the run used real (non-synthetic) data")
    add_domain_options(ap)  # --domain, --dataset, --licence (manifest training.*)
    ap.add_argument("--command", default=None, help="the training command to record (default: from the run)")
    args = ap.parse_args(argv)
    provenance = domain_fields(args)

    import torch

    from train.seg.export import export_member
    from train.seg.loop import load_member

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    summary_path = args.run / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    eval_path = args.run / "eval" / "metrics.json"
    evaluation = json.loads(eval_path.read_text()) if eval_path.is_file() else {}
    all_metrics = evaluation.get("metrics", {})
    rows = []
    for name in [n.strip() for n in args.members.split(",") if n.strip()]:
        model, cfg, ck = load_member(args.run / name / args.checkpoint)
        member_summary = next((m for m in summary.get("members", []) if m["member"] == name), {})
        training = {
            "data": args.data_description,
            "synthetic_only": provenance["synthetic_only"],
            "clinical_use": False,
            **{k: v for k, v in provenance.items() if k != "synthetic_only"},
            "command": args.command or summary.get("command", "lus-train seg"),
            "preset": summary.get("preset"),
            "steps": ck.get("step"),
            "stopped": member_summary.get("stopped"),
            "minutes": member_summary.get("minutes_all", member_summary.get("minutes")),
            "cpu_minutes": member_summary.get("cpu_minutes_all", member_summary.get("cpu_minutes")),
            "options": ck.get("options"),
        }
        metrics = {
            "held_out": all_metrics.get(name, {}),
            "ensemble_held_out": all_metrics.get("ensemble", {}),
            "n_frames": evaluation.get("n_frames"),
            "patients": evaluation.get("patients"),
        }
        onnx_path, json_path, err = export_member(
            cfg, model, args.out, version=args.version, training=training, metrics=metrics
        )
        mb = onnx_path.stat().st_size / 1e6
        rows.append((name, mb, err))
        print(f"[export-seg] {name}: {onnx_path} ({mb:.1f} MB, parity {err:.1e}) + {json_path.name}")
    total = sum(r[1] for r in rows)
    print(f"[export-seg] total {total:.1f} MB")
    table = (
        (args.run / "eval" / "table.md").read_text()
        if (args.run / "eval" / "table.md").is_file()
        else "(not evaluated)"
    )
    card = MODEL_CARD.format(
        version=args.version,
        command=summary.get("command", "lus-train seg ..."),
        sizes="\n".join(f"| {n} | {mb:.1f} MB | {e:.1e} |" for n, mb, e in rows),
        total=total,
        table=table,
        minutes=summary.get("minutes_total", "?"),
        cpu_minutes=summary.get("cpu_minutes_total", "?"),
        data=args.data_description,
    )
    panels = []
    for png in ("fig5.png", "fig6.png"):  # the evaluation's panels travel with the models
        if (args.run / "eval" / png).is_file():
            shutil.copyfile(args.run / "eval" / png, args.out / png)
            panels.append(f"![{png}]({png})")
    (args.out / "MODEL_CARD.md").write_text(
        card + ("\n## Panels (held-out patients)\n\n" + "\n\n".join(panels) + "\n" if panels else "")
    )
    return 0


MODEL_CARD = """# Segmentation ensemble (lite) — model card

**Demonstration models trained on synthetic data only. Not for clinical use.**

- Members: paper U-Net (Roy et al. 2020 §IV-C), U-Net++ (MobileNetV2, first four stages),
  DeepLabv3+ (MobileNetV2); ensemble = unweighted mean of the members' softmax.
- Input: `image` [batch, 1, 260, 200] (H×W), letterboxed gray frame scaled to [−1, 1]
  (`engines.preprocess`); `dropout_mask` [batch, C, h, w] at the latent features (ones =
  deterministic; Bernoulli 0 or 1/(1−p) with p = 0.5 for MC dropout). Output: `probs`
  [batch, 5, 260, 200], softmax over [score 0, score 1, score 2, score 3, background].
- Version {version}. Data: {data}. Training used {cpu_minutes} CPU-minutes on one
  thread ({minutes} min wall clock on a shared 2-core machine).
- Reproduce (docs/segmentation.md): `{command}`, then `lus-train evaluate-seg --run RUN` and
  `lus-train export-seg --run RUN`.

## Held-out metrics (synthetic patients never seen in training)

{table}
## Files

| member | ONNX size | max abs diff vs PyTorch |
|---|---|---|
{sizes}

Total {total:.1f} MB.

## Limits

Trained for minutes on simulated B-mode frames: the numbers above say how well the networks
separate the simulator's markers, nothing about real lung ultrasound. Retrain on annotated real
data (ICLUS-DB layout, `--data DIR --probe convex`) with the paper's settings (`--lr 1e-5
--batch-size 32`, no time limit) before drawing any clinical conclusion.
"""
