"""Table IV evaluation of segmentation members and their ensemble (Roy et al. 2020 §V-C).

For each member and for the ensemble (unweighted softmax mean; also the authors' weighted variant,
see :mod:`train.seg.ensemble`): mean categorical pixel accuracy, Dice of the union of COVID-19
scores, categorical Dice over scores 0, 2, 3 — on held-out patients. Writes ``metrics.json``,
``table.md`` and the Fig. 5 / Fig. 6 style panels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from train.seg.data import SegSamples, SegTorchDataset
from train.seg.ensemble import ensemble_labels, mc_dropout
from train.seg.metrics import SegMeter
from train.seg.panels import fig5, fig6

PRETTY = {"unet": "U-Net", "unetpp": "U-Net++", "deeplabv3p": "DeepLabv3+"}


@torch.no_grad()
def evaluate_members(
    models: dict[str, nn.Module], samples: SegSamples, batch: int = 4, progress: bool = True
) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """Metrics per member, ``ensemble`` and ``ensemble_authors``; also the ensemble label maps."""
    meters = {name: SegMeter() for name in [*models, "ensemble", "ensemble_authors"]}
    ds = SegTorchDataset(samples)
    ens_labels = []
    rng = range(0, len(ds), batch)
    if progress:
        from tqdm import tqdm

        rng = tqdm(rng, desc="evaluate-seg", unit="batch", mininterval=5)
    for i in rng:
        idx = range(i, min(len(ds), i + batch))
        x = torch.stack([ds[j][0] for j in idx])
        y = samples.masks[i : i + len(idx)]
        probs = []
        for name, m in models.items():
            p = torch.softmax(m.eval()(x), dim=1)
            probs.append(p)
            meters[name].update(p.argmax(1).numpy(), y)
        lab = ensemble_labels(probs).numpy()
        meters["ensemble"].update(lab, y)
        meters["ensemble_authors"].update(ensemble_labels(probs, authors_weighting=True).numpy(), y)
        ens_labels.append(lab.astype(np.uint8))
    return {k: m.result() for k, m in meters.items()}, np.concatenate(ens_labels)


def table_markdown(metrics: dict[str, dict[str, float]], caption: str) -> str:
    """Table IV-shaped Markdown (rows: members, ensemble, ensemble with the authors' weighting)."""
    lines = [
        caption,
        "",
        "| Model | Acc. | Dice (COVID union) | Cat. Dice (0, 2, 3) | Dice 0 | Dice 2 | Dice 3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in metrics.items():
        label = PRETTY.get(
            name,
            {
                "ensemble": "**Ensemble** (mean softmax)",
                "ensemble_authors": "Ensemble, authors' weighting",
            }.get(name, name),
        )
        vals = [
            r["pixel_accuracy"],
            r["covid_dice"],
            r["categorical_dice"],
            r["dice_score0"],
            r["dice_score2"],
            r["dice_score3"],
        ]
        lines.append(f"| {label} | " + " | ".join("n/a" if np.isnan(v) else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def pick_panel_frames(samples: SegSamples, n: int, seed: int = 0) -> np.ndarray:
    """Frames for panels: prefer ones that show COVID markers (scores 2, 3), from different patients."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(samples))
    covid = [i for i in order if np.isin(samples.masks[i], (2, 3)).any()]
    rest = [i for i in order if i not in set(covid)]
    chosen, seen = [], set()
    for i in covid + rest:
        if samples.patients[i] in seen and len(seen) < len(set(samples.patients)):
            continue
        chosen.append(i)
        seen.add(samples.patients[i])
        if len(chosen) == n:
            break
    return np.array(sorted(chosen[:n]), dtype=np.int64)


def run_evaluation(
    models: dict[str, nn.Module],
    samples: SegSamples,
    out_dir: Path,
    *,
    mc_k: int = 40,
    mc_p: float = 0.5,
    panels: int = 4,
    uncertainty_panels: int = 2,
    batch: int = 4,
    caption: str = "",
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate, write ``metrics.json``, ``table.md``, ``fig5.png`` and ``fig6.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics, ens = evaluate_members(models, samples, batch)
    (out_dir / "table.md").write_text(table_markdown(metrics, caption))
    sel = pick_panel_frames(samples, panels, seed)
    fig5(
        samples.images[sel],
        samples.masks[sel],
        ens[sel],
        out_dir / "fig5.png",
        "Ensemble segmentation on held-out patients (cf. Roy et al. Fig. 5)",
    )
    usel = sel[:uncertainty_panels]
    stds, preds = [], []
    ds = SegTorchDataset(samples)
    for i in usel:
        mean, _, covid_std = mc_dropout(list(models.values()), ds[int(i)][0][None], k=mc_k, p=mc_p, seed=seed)
        stds.append(covid_std.numpy())
        preds.append(mean.argmax(0).numpy())
    if len(usel):
        fig6(
            samples.images[usel],
            samples.masks[usel],
            np.stack(preds),
            np.stack(stds),
            out_dir / "fig6.png",
            f"COVID-19 class uncertainty: std over {mc_k} MC-dropout samples (cf. Roy et al. Fig. 6)",
        )
    result = {
        "metrics": metrics,
        "n_frames": len(samples),
        "patients": sorted(set(samples.patients.tolist())),
        "mc_dropout": {"k": mc_k, "p": mc_p, "frames": usel.tolist()},
        "ensemble_beats_every_member_covid_dice": bool(
            all(metrics["ensemble"]["covid_dice"] > metrics[n]["covid_dice"] for n in models)
        ),
    }
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    return result
