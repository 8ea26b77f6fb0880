"""``lus-train evaluate``: Table I of Roy et al. 2020 for trained frame models.

    lus-train evaluate runs/cnn-ce runs/regstn --data data/synth --out results/table1 --k 3 5 --agree 3 4

Each RUN is a ``lus-train frame`` output folder (its ``last.pt`` and ``splits.json``: the test
patients come from the run, so every model is scored on its own held-out patients). Writes
``table1.md`` (weighted F1 % under Settings 1/2/3), ``results.json``, one confusion-matrix PNG per
model (Setting 1) and ``crops-<model>.png`` (Fig. 4: the STN crops on sample test frames).
``--shifts noise texture …`` also scores Setting 1 on appearance-shifted copies of the test frames
(``train.frame.robustness``; not in the paper) and writes ``shifts.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from train.commands import load_run
from train.frame.sources import add_data_args, load_table


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lus-train evaluate", description="Table I: frame models, Settings 1-3."
    )
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (or last.pt files) of lus-train frame")
    ap.add_argument("--out", type=Path, required=True, help="folder for table1.md, results.json and PNGs")
    ap.add_argument(
        "--k", type=int, nargs="*", default=[3, 5], help="Setting 2: frames dropped around transitions"
    )
    ap.add_argument(
        "--agree", type=int, nargs="*", default=[3, 4], help="Setting 3: clinicians that must agree"
    )
    ap.add_argument(
        "--names", nargs="*", help="row names, one per run (default: the Table I name of each model)"
    )
    ap.add_argument(
        "--shifts",
        nargs="*",
        default=[],
        metavar="SHIFT",
        help="also Setting 1 under these appearance shifts (noise, texture, blur, gamma_bright, gamma_dark)",
    )
    ap.add_argument("--quiet", action="store_true")
    add_data_args(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from train.frame.config import TABLE1_LABELS
    from train.frame.evaluate import (
        predict,
        save_confusion_png,
        save_crops_png,
        table1_markdown,
        table1_scores,
        weighted_f1,
    )
    from train.frame.robustness import SHIFTS, shifted

    unknown = sorted(set(args.shifts) - set(SHIFTS))
    if unknown:
        raise SystemExit(f"--shifts {unknown}: choose from {[s for s in SHIFTS if s != 'none']}")

    args.out.mkdir(parents=True, exist_ok=True)
    tables: dict[tuple[int, int], object] = {}
    rows, results = {}, {}
    if args.names and len(args.names) != len(args.runs):
        raise SystemExit(f"--names gives {len(args.names)} names for {len(args.runs)} runs")
    for i, run in enumerate(args.runs):
        model, cfg, ckpt, ckpt_path = load_run(run)
        hw = tuple(cfg.input_hw)
        if hw not in tables:
            tables[hw] = load_table(args, hw, progress=not args.quiet)
        table = tables[hw]
        test_patients = ckpt.get("splits", {}).get("test")
        if not test_patients:
            raise SystemExit(
                f"{ckpt_path}: the checkpoint records no test patients; pass a run of lus-train frame"
            )
        test = table.select_patients(test_patients)  # type: ignore[attr-defined]
        probs, _ = predict(model, test, cfg.eval_batch)
        label = args.names[i] if args.names else TABLE1_LABELS.get(cfg.model, cfg.model)
        name = label if label not in rows else f"{label} ({run.name})"
        rows[name] = table1_scores(test, probs, args.k, args.agree)
        stem = run.name if run.is_dir() else run.parent.name
        cm = save_confusion_png(
            test.labels,
            probs.argmax(1),
            args.out / f"confusion-{stem}.png",
            f"{name}\nSetting 1, {len(test)} frames",
        )
        crops = save_crops_png(model, test, args.out / f"crops-{stem}.png")
        results[name] = {
            "run": str(run),
            "model": cfg.model,
            "epochs": ckpt.get("epoch"),
            "settings": rows[name],
            "confusion_setting1": cm.tolist(),
            "crops_png": crops,
            "test_patients": len(test_patients),
            "test_frames": len(test),
        }
        if args.shifts:
            shift_f1 = {}
            for shift in args.shifts:
                shifted_probs, _ = predict(model, shifted(test, shift), cfg.eval_batch)
                shift_f1[shift] = weighted_f1(test.labels, shifted_probs.argmax(1))
            results[name]["shifts_f1"] = shift_f1
        print(f"{name}: Setting 1 weighted F1 {rows[name]['Setting 1']['f1']:.1f}%", flush=True)
    md = table1_markdown(rows, args.k, args.agree)
    (args.out / "table1.md").write_text(
        "Weighted F1 (%) on held-out patients (Roy et al. 2020 Table I layout).\n\n" + md + "\n"
    )
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(md)
    if args.shifts:
        head = "| model | no shift | " + " | ".join(args.shifts) + " |"
        lines = [head, "|---" * (len(args.shifts) + 2) + "|"]
        for name, res in results.items():
            cells = [f"{res['shifts_f1'][s]:.1f}" for s in args.shifts]
            lines.append(f"| {name} | {res['settings']['Setting 1']['f1']:.1f} | " + " | ".join(cells) + " |")
        text = "\n".join(lines)
        (args.out / "shifts.md").write_text(
            "Weighted F1 (%), Setting 1, test frames under appearance shifts (train/frame/robustness.py).\n\n"
            + text + "\n"
        )
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
