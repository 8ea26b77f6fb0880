"""Benchmark report: the contract keys, the performance targets, a Markdown table of every stage, and
PNG latency histograms + CDFs.

Contract keys (nested dicts for the dotted names; ``tools/*`` and the lead's scripts read them):

* ``scoring_lane.afap_fps`` — frames/s scored as fast as possible (primary source and backend);
* ``scoring_lane.paced.{p50_ms, p99_ms, drops, frames}`` — paced at the source's frame rate:
  capture → received-by-the-subscriber latency, frames read but never received, frames received;
* ``segmentation_lane.fps`` — segmentation runs/s during the paced run (both lanes running);
* ``aggregator.update_us_1e2`` / ``aggregator.update_us_1e5`` — µs per streaming update (median of
  the 100 updates before 10² and before 10⁵ frames);
* ``speedup_vs_naive`` — engine as-fast-as-possible fps / naive PyTorch loop fps, same source;
* ``machine`` — :func:`stream.bench.machine.describe_machine`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

CONTRACT_KEYS = (
    "scoring_lane.afap_fps",
    "scoring_lane.paced.p50_ms",
    "scoring_lane.paced.p99_ms",
    "scoring_lane.paced.drops",
    "scoring_lane.paced.frames",
    "segmentation_lane.fps",
    "aggregator.update_us_1e2",
    "aggregator.update_us_1e5",
    "speedup_vs_naive",
    "machine",
)

#: every stage the Markdown report has a row for (decode, ROI + preprocess, each model,
#: aggregate, serialise, publish→receive, end to end)
STAGES = (
    "decode (isolated)",
    "ROI (isolated)",
    "preprocess (isolated)",
    "capture→lane wait",
    "preprocess",
    "infer (per frame)",
    "aggregate",
    "serialise (isolated)",
    "publish",
    "publish→receive",
    "capture→publish",
    "end to end (capture→received)",
    "segmentation infer",
    "segmentation end to end",
)

#: stages whose 1/mean is a capacity (frames/s that stage alone could sustain on one core)
RATE_STAGES = frozenset(STAGES) - {
    "capture→lane wait", "publish", "publish→receive", "capture→publish", "end to end (capture→received)",
    "segmentation end to end",
}  # fmt: skip


def get_dotted(d: dict[str, Any], key: str) -> Any:
    cur: Any = d
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(key)
        cur = cur[part]
    return cur


def _f(x: Any, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, int | float):
        return f"{x:.{nd}f}"
    return str(x)


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf → None, numpy scalars → floats."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str | bytes):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ------------------------------------------------------------------------------------- contract
def find_run(runs: list[dict[str, Any]], mode: str, backend: str, source: str | None = None) -> dict | None:
    for r in runs:
        if r["mode"] == mode and r["backend"] == backend and (source is None or r["source"] == source):
            return r
    return None


def contract(result: dict[str, Any], backend: str = "onnxruntime") -> dict[str, Any]:
    """The contract keys from a full result (primary = first source, ``backend``)."""
    runs = result.get("runs", [])
    source = result["sources"][0]["label"] if result.get("sources") else None
    paced = find_run(runs, "paced", backend, source)
    afap = find_run(runs, "afap", backend, source)
    agg = (result.get("isolated") or {}).get("aggregator") or {}
    naive = result.get("naive") or {}
    afap_fps = afap["scoring"]["fps"] if afap else float("nan")
    out: dict[str, Any] = {
        "scoring_lane": {
            "backend": backend,
            "source": source,
            "model": ((paced or afap or {}).get("lanes") or {}).get("scoring", {}).get("model"),
            "afap_fps": afap_fps,
            "afap_frames": afap["scoring"]["frames"] if afap else 0,
            "paced": {
                "input_fps": paced["scoring"]["input_fps"] if paced else float("nan"),
                "fps": paced["scoring"]["fps"] if paced else float("nan"),
                "p50_ms": paced["scoring"]["end_to_end"]["p50_ms"] if paced else float("nan"),
                "p95_ms": paced["scoring"]["end_to_end"]["p95_ms"] if paced else float("nan"),
                "p99_ms": paced["scoring"]["end_to_end"]["p99_ms"] if paced else float("nan"),
                "max_ms": paced["scoring"]["end_to_end"]["max_ms"] if paced else float("nan"),
                "drops": paced["scoring"]["drops"]["total"] if paced else -1,
                "drops_detail": paced["scoring"]["drops"] if paced else None,
                "frames": paced["scoring"]["drops"]["received"] if paced else 0,
            },
        },
        "segmentation_lane": {
            "model": ((paced or {}).get("lanes") or {}).get("segmentation", {}).get("model"),
            "fps": paced["segmentation"]["fps"] if paced else float("nan"),
            "afap_fps": afap["segmentation"]["fps"] if afap else float("nan"),
            "runs_paced": paced["segmentation"]["runs"] if paced else 0,
        },
        "aggregator": {
            "update_us_1e2": agg.get("update_us_at_100", float("nan")),
            "update_us_1e5": agg.get("update_us_at_100000", float("nan")),
            "ratio_1e5_1e2": agg.get("ratio_last_first", float("nan")),
        },
        "speedup_vs_naive": (afap_fps / naive["fps"])
        if naive.get("available") and naive.get("fps")
        else None,
        "machine": result.get("machine", {}),
    }
    return out


def targets(c: dict[str, Any], models: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The performance targets against the contract numbers: (name, target, measured, met)."""
    p = c["scoring_lane"]["paced"]

    def row(name: str, target: str, measured: Any, met: bool | None) -> dict[str, Any]:
        return {"target": name, "wanted": target, "measured": measured, "met": met}

    def ok(x: Any, pred: Any) -> bool | None:
        return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else bool(pred(x))

    agg1, agg5 = c["aggregator"]["update_us_1e2"], c["aggregator"]["update_us_1e5"]
    flat = c["aggregator"]["ratio_1e5_1e2"]
    rows = [
        row(
            "scoring lane as fast as possible",
            "≥ 30 fps",
            _f(c["scoring_lane"]["afap_fps"]),
            ok(c["scoring_lane"]["afap_fps"], lambda x: x >= 30),
        ),
        row(
            "scoring lane paced: drops",
            "0",
            p["drops"],
            ok(p["drops"], lambda x: x == 0) if p["frames"] else None,
        ),
        row(
            "scoring lane paced: p99 capture→subscriber",
            "≤ 50 ms",
            _f(p["p99_ms"]),
            ok(p["p99_ms"], lambda x: x <= 50),
        ),
        row(
            "segmentation lane (with scoring at its target)",
            "≥ 5 fps",
            _f(c["segmentation_lane"]["fps"]),
            ok(c["segmentation_lane"]["fps"], lambda x: x >= 5),
        ),
        row(
            "aggregator update",
            "≤ 20 µs",
            f"{_f(agg1, 2)} µs @1e2, {_f(agg5, 2)} µs @1e5",
            ok(max(agg1, agg5), lambda x: x <= 20),
        ),
        row(
            "aggregator flat 1e2 → 1e5", "within 20 %", f"×{_f(flat, 2)}", ok(flat, lambda x: 0.8 <= x <= 1.2)
        ),
        row(
            "engine vs naive loop",
            "≥ 3×",
            _f(c["speedup_vs_naive"], 2),
            ok(c["speedup_vs_naive"], lambda x: x >= 3),
        ),
    ]
    return rows


# ------------------------------------------------------------------------------------- markdown
def _stage_rows(run: dict[str, Any], iso: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None, str]]:
    s, g = run["scoring"], run["segmentation"]
    pre = iso.get("preprocess") or {}
    pre_frame = pre.get("frame")
    ser = (iso.get("serialise") or {}).get("encode_validated")
    return [
        ("decode (isolated)", iso.get("decode"), "per frame, same Source code, this process"),
        ("ROI (isolated)", iso.get("roi"), "grey + RoiTracker.update + crop"),
        ("preprocess (isolated)", pre_frame, "Prepared.input (letterbox + scale), frame model"),
        ("capture→lane wait", s["stages"]["wait"], "ring buffer + batching"),
        ("preprocess", s["stages"]["preprocess"], "per batch, in the engine"),
        ("infer (per frame)", s["infer_per_frame"], f"batch mean {_f(s['mean_batch'], 2)}"),
        ("aggregate", s["aggregate_batch1"], "batch-1 frames: this frame's clip-aggregator fold"),
        ("serialise (isolated)", ser, "wire.encode incl. validation"),
        ("publish", s["stages"]["publish"], "ready → socket lock"),
        ("publish→receive", s["publish_to_receive"], "encode + send + TCP + subscriber unpack"),
        ("capture→publish", s["capture_to_publish"], "the engine's own latency"),
        ("end to end (capture→received)", s["end_to_end"], "what a display sees"),
        ("segmentation infer", g["stages"]["infer"], f"{g['runs']} runs, {_f(g['fps'])} runs/s"),
        ("segmentation end to end", g["end_to_end"], "capture → received"),
    ]


def markdown(result: dict[str, Any]) -> str:
    c = result["contract"]
    lines = [f"# lus-stream benchmark — {result.get('created_utc', '')}", ""]
    m = result.get("machine", {})
    lines += [
        f"Machine: {m.get('cpu_model')} · {m.get('cores')} cores · "
        f"flags {', '.join(m.get('cpu_flags') or [])} · "
        f"matmul peak {_f(m.get('matmul_fp32_gflops'))} GFLOP/s fp32 · git {m.get('git_revision')} · "
        f"load average at start {_f(result.get('load_average_start'), 2)}",
        "",
        f"Command: `{result.get('command', '')}`",
        "",
        "## Targets",
        "",
        "| target | wanted | measured | met |",
        "|---|---|---|---|",
    ]
    for t in result.get("targets", []):
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(f"| {t['target']} | {t['wanted']} | {t['measured']} | {met} |")
    lines += [
        "",
        f"Primary: backend `{c['scoring_lane']['backend']}`, source `{c['scoring_lane']['source']}`, "
        f"scoring model {c['scoring_lane']['model']}, segmentation {c['segmentation_lane']['model']}.",
        "",
    ]
    ens = c["segmentation_lane"].get("ensembles") or {}
    if ens:
        lines += ["## Other segmentation ensembles (paced, with the scoring lane)", "",
                  "| ensemble | members | runs/s | infer p50 ms | scoring p99 ms | scoring drops |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for label, e in ens.items():
            lines.append(f"| {label} | {e['model']} | {_f(e['fps'], 2)} | {_f(e['infer']['p50_ms'])} | "
                         f"{_f(e['scoring_p99_ms'])} | {e['scoring_drops']} |")  # fmt: skip
        lines.append("")
    iso = result.get("isolated") or {}
    for run in result.get("runs", []):
        lines += [
            f"## {run['source']} · {run['backend']} · {run['mode']}",
            "",
            f"`{run.get('command', '')}`",
            "",
            f"Scoring {_f(run['scoring']['fps'])} frames/s (input {_f(run['scoring']['input_fps'])} fps), "
            f"{run['scoring']['frames']} frames, max batch {run['scoring']['max_batch']}; segmentation "
            f"{_f(run['segmentation']['fps'])} runs/s ({run['segmentation']['runs']} runs, "
            f"{run['segmentation']['skipped']} offers replaced).",
            "",
            "| stage | n | capacity /s (1/mean) | mean ms | p50 ms | p95 ms | p99 ms | max ms | note |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, st, note in _stage_rows(run, iso):
            if not st:
                lines.append(f"| {name} | 0 | – | – | – | – | – | – | {note} |")
                continue
            mean = st.get("mean_ms")
            rate = None  # a processing stage's capacity; latency spans (waits, transport) have none
            if name in RATE_STAGES and isinstance(mean, float) and math.isfinite(mean) and mean > 0:
                rate = 1e3 / mean
            lines.append(
                f"| {name} | {st.get('n', 0)} | {_f(rate, 0)} | {_f(mean, 2)} | {_f(st.get('p50_ms'), 2)} | "
                f"{_f(st.get('p95_ms'), 2)} | {_f(st.get('p99_ms'), 2)} | {_f(st.get('max_ms'), 2)} "
                f"| {note} |"
            )
        d = run["scoring"]["drops"]
        lines += [
            "",
            f"Drops: read {d['read']}, recorded {d['recorded']}, received {d['received']} → total "
            f"{d['total']} (capture buffer {d['capture_buffer']}, transport "
            f"{d['transport']}, of which before the first received {d['transport_before_first_received']}); "
            f"{d['read_after_last_scored']} read after the last scored frame (the run's stop).",
            "",
            "| process | CPU % streaming | CPU % whole life | CPU s | wall s | peak RSS MB | threads |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in run.get("processes", []):
            lines.append(
                f"| {p['role']} | {_f(p.get('cpu_percent_streaming'))} | {_f(p['cpu_percent'])} | "
                f"{_f(p['cpu_s'], 2)} | {_f(p['wall_s'], 1)} | {_f(p['peak_rss_mb'])} | {p['threads_max']} |"
            )
        lines.append("")
    models = iso.get("models") or {}
    if models:
        lines += [
            "## Models (isolated, one thread)",
            "",
            "| backend | model | batch | ms/frame (p50) | CPU ms/frame | frames/s | GFLOP/frame | GFLOP/s "
            "| % of peak |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for backend, per_model in models.items():
            for name, r in per_model.items():
                if not r.get("available"):
                    lines.append(
                        f"| {backend} | {name} | – | unavailable: {r.get('reason', '')[:160]} | | | | | |"
                    )
                    continue
                for b, row in r["batches"].items():
                    lines.append(
                        f"| {backend} | {name} | {b} | {_f(row['ms_per_frame'], 2)} | "
                        f"{_f(row.get('cpu_ms_per_frame'), 2)} | {_f(row['fps'])} | "
                        f"{_f(r.get('gflop_per_frame'), 3)} | {_f(row.get('gflops_achieved'), 1)} | "
                        f"{_f(row.get('percent_of_peak'), 1)} |"
                    )
        lines.append("")
    opt = iso.get("ort_optimisation")
    if opt:
        lines += ["## ONNX Runtime graph optimisation (frame model, batch 1, one thread, isolated)", "",
                  "| level | p50 ms | CPU ms |", "|---|---|---|"]  # fmt: skip
        for level, st in opt.items():
            lines.append(f"| {level} | {_f(st.get('p50_ms'), 2)} | {_f(st.get('cpu_ms'), 2)} |")
        lines.append("")
    agg = iso.get("aggregator")
    if agg:
        lines += [
            "## Aggregator (isolated)",
            "",
            f"`{agg['kind']}` update: {_f(agg['update_us_at_100'], 2)} µs after 10² frames, "
            f"{_f(agg['update_us_at_100000'], 2)} µs after 10⁵ (ratio {_f(agg['ratio_last_first'], 2)}; "
            f"p99 {_f(agg['update_us_p99_at_100'], 2)} / {_f(agg['update_us_p99_at_100000'], 2)} µs).",
            "",
        ]
    ser = iso.get("serialise")
    if ser:
        lines += [
            f"## Serialisation (isolated, one frame message of {ser['bytes']} bytes)",
            "",
            "| step | p50 µs | p99 µs |",
            "|---|---|---|",
        ]
        for k in ("encode_validated", "encode_unvalidated", "unpack_subscriber", "decode_validated",
                  "publish_all", "publish_sample", "publish_off"):
            if k in ser:  # the publish rows: Publisher.publish with --validate all / sample / off
                lines.append(f"| {k} | {_f(ser[k]['p50_ms'] * 1e3, 1)} | {_f(ser[k]['p99_ms'] * 1e3, 1)} |")
        lines.append("")
    thr = result.get("threads")
    if thr:
        lines += [
            "## Thread budget (ORT intra-op threads, spin-wait; scoring model, segmentation members)",
            "",
            "| scoring threads | segmentation threads | spinning | scoring paced at | scoring p50 ms "
            "| p99 ms | scoring fps | seg fps | CPU % |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in thr:
            paced = f"{_f(r.get('paced_fps'), 0)} fps" if r.get("paced_fps") else "as fast as possible"
            lines.append(
                f"| {r['threads']} | {r.get('seg_threads', 1 if r['with_seg'] else 0) or 'off'} | "
                f"{'on' if r['spinning'] else 'off'} | {paced} | {_f(r['score_p50_ms'], 2)} | "
                f"{_f(r['score_p99_ms'], 2)} | {_f(r['score_fps'])} | {_f(r['seg_fps'], 2)} | "
                f"{_f(r['cpu_percent'])} |"
            )
        lines.append("")
    naive = result.get("naive")
    if naive:
        if naive.get("available"):
            lines += [
                "## Naive reference loop (PyTorch eager, one frame at a time)",
                "",
                f"{_f(naive['fps'])} frames/s over {naive['frames']} frames ({naive['model_source']}, "
                f"{naive['threads']} torch thread); end to end p50 {_f(naive['end_to_end']['p50_ms'])} ms. "
                f"Engine as fast as possible: {_f(c['scoring_lane']['afap_fps'])} frames/s → speed-up "
                f"×{_f(c['speedup_vs_naive'], 2)}.",
                "",
                f"`{naive.get('command', '')}`",
                "",
            ]
        else:
            lines += ["## Naive reference loop", "", f"not run: {naive.get('reason')}", ""]
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- Triton (bench triton)
def _batch_sizes(sizes: dict[Any, int] | None) -> str:
    if sizes is None:
        return "–"
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted((int(k), v) for k, v in sizes.items())) + "}"


def triton_table(rows: list[dict[str, Any]]) -> list[str]:
    """The Markdown table of :mod:`stream.bench.triton`'s rows (one per streams × backend)."""
    lines = [
        "| streams | backend | p50 ms | p99 ms | max ms | frames | executions | mean batch | batch sizes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        execs = "–" if r.get("executions") is None else str(r["executions"])
        lines.append(
            f"| {r['streams']} | {r['backend']} | {_f(r['p50_ms'], 2)} | {_f(r['p99_ms'], 2)} | "
            f"{_f(r['max_ms'], 2)} | {r['frames']} | {execs} | {_f(r.get('mean_batch'), 2)} | "
            f"{_batch_sizes(r.get('batch_sizes'))} |"
        )
    return lines


def triton_markdown(result: dict[str, Any]) -> str:
    """``triton.md``: served (Triton) vs in-process ONNX Runtime per number of streams."""
    m = result.get("machine", {})
    srv = result.get("server") or {}
    clocks = "in step" if result.get("phase") == "same" else "at random offsets"
    lines = [
        f"# lus-stream benchmark: Triton vs in-process ONNX Runtime — {result.get('created_utc', '')}",
        "",
        f"Machine: {m.get('cpu_model')} · {m.get('cores')} cores · git {m.get('git_revision')} · "
        f"load average at start {_f(result.get('load_average_start'), 2)}",
        "",
        f"Command: `{result.get('command', '')}`",
        "",
        f"Model `{result.get('model')}` ({result.get('manifest')}); {result.get('frames_decoded')} frames of "
        f"`{Path(str(result.get('clip'))).name}` (ROI-cropped, preprocessed as the lanes do), each stream "
        f"sending one frame every {_f(1e3 / result['fps'], 1)} ms ({_f(result['fps'], 0)} fps) for "
        f"{_f(result['seconds'], 0)} s, frame clocks {clocks}. Latency: one `engine.infer` call per frame, "
        f"as the client sees it. ONNX Runtime threads: {result.get('threads')} per in-process engine and "
        "per served model.",
        "",
        f"Server: {srv.get('ready') or srv.get('url')}"
        + (f" (`{srv['serve_args']}`)" if srv.get("serve_args") else ""),
        "",
        *triton_table(result.get("rows", [])),
        "",
        "Executions and batch sizes: `triton` from the server's statistics (`get_inference_statistics`, "
        "executions per batch size the dynamic batcher formed, during that phase); `onnxruntime` runs one "
        "session per frame in its stream's thread (batch 1 by construction).",
        "",
    ]
    for r in result.get("rows", []):
        what = ""
        if r["backend"] == "triton":
            what = (
                f"{r['inferences']} inferences in {r['executions']} executions, batch sizes "
                f"{_batch_sizes(r.get('batch_sizes'))}; "
                if r.get("executions") is not None
                else "server statistics unavailable; "
            )
        lines.append(f"- N={r['streams']} {r['backend']}: {what}{r['late']} of {r['frames']} calls longer "
                     f"than the frame interval, {r['errors']} failed.")  # fmt: skip
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- plots
def plots(samples: dict[str, dict[str, list[int]]], out_dir: Path) -> list[Path]:
    """Latency histograms and CDFs (end to end, per run) as PNGs; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    for key, title in (
        ("end_to_end_ns", "scoring: capture → received"),
        ("seg_end_to_end_ns", "segmentation: capture → received"),
    ):
        series = {label: np.asarray(s.get(key, []), dtype=np.float64) / 1e6 for label, s in samples.items()}
        series = {k: v for k, v in series.items() if v.size}
        if not series:
            continue
        stem = key.removesuffix("_ns")
        fig, ax = plt.subplots(figsize=(7, 4))
        hi = max(float(np.percentile(v, 99.5)) for v in series.values())
        bins = np.linspace(0, max(hi, 1e-3) * 1.05, 60).tolist()
        for label, v in series.items():
            ax.hist(np.clip(v, 0, bins[-1]), bins=bins, histtype="step", label=f"{label} (n={v.size})")
        ax.set_xlabel("latency ms (clipped at p99.5)")
        ax.set_ylabel("frames")
        ax.set_title(f"{title}: histogram")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{stem}_hist.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, v in series.items():
            x = np.sort(v)
            ax.plot(x, np.arange(1, x.size + 1) / x.size, label=label)
        ax.set_xscale("log")
        ax.axvline(50, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("latency ms (log)")
        ax.set_ylabel("fraction of frames ≤ x")
        ax.set_title(f"{title}: CDF (dashed: 50 ms)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{stem}_cdf.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(
    result: dict[str, Any],
    out_dir: Path,
    json_path: Path | None = None,
    samples: dict[str, dict[str, list[int]]] | None = None,
) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md``, the PNGs and ``samples.npz`` into ``out_dir`` (+ ``json_path``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = _clean(result)
    files = {"json": out_dir / "bench.json", "markdown": out_dir / "bench.md"}
    text = json.dumps(clean, indent=1, ensure_ascii=False)
    files["json"].write_text(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)
        files["contract_json"] = json_path
    files["markdown"].write_text(markdown(result))
    if samples:
        import numpy as np

        for i, p in enumerate(plots(samples, out_dir)):
            files[f"png{i}"] = p
        arrays = {
            f"{label}:{k}": np.asarray(v, dtype=np.int64)
            for label, s in samples.items()
            for k, v in s.items()
        }
        # Any: savez_compressed's stub types every keyword as allow_pickle's bool; these names ("label:key")
        # can never be allow_pickle.
        named: dict[str, Any] = {k.replace("/", "_"): v for k, v in arrays.items()}
        np.savez_compressed(out_dir / "samples.npz", **named)
        files["samples"] = out_dir / "samples.npz"
    return files
