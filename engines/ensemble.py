"""Segmentation ensembles and MC-dropout uncertainty (Roy et al. 2020, §IV-C and §V-C).

* :class:`Ensemble` — runs every member on the same input and returns the unweighted mean of their
  softmax outputs (the paper's ensemble).
* :func:`mc_dropout` — per-pixel uncertainty from K Monte-Carlo dropout samples per member (40 in
  the paper). Convention (docs/engines.md "Ensembles and MC dropout"): each segmentation ONNX takes,
  besides ``image``, a ``dropout_mask`` input [batch, C, h, w] multiplied into the latent layer, already
  scaled (0 or 1/(1-p)); the member's manifest names it in ``parameters.mc_dropout`` with ``p`` and the
  per-sample shape. K samples of one frame are ONE call per member: the image repeated K times
  along the batch, with K Bernoulli masks drawn here by numpy (seedable). The deterministic
  ensemble feeds masks of ones.

Samples (``mode``): ``"ensemble"`` (default) — sample k is the ensemble's output under the k-th
dropout draw of every member (mean over members), so the statistics are over K ensemble
predictions, as the paper reports them (std "across 40 samples") and as ``train.seg.ensemble``
evaluates them; ``"mixture"`` — every member's every draw is a sample (M·K samples), which adds the
members' disagreement to the spread. Std is the population std (ddof=0).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import Engine, EngineError, EngineInputError

COVID_CLASSES = (1, 2, 3)


def _mc_spec(engine: Engine) -> Mapping[str, Any] | None:
    return (engine.manifest.get("parameters") or {}).get("mc_dropout")


def _image_input(engine: Engine) -> str:
    mc = _mc_spec(engine)
    names = [t.name for t in engine.inputs if mc is None or t.name != mc["input"]]
    if len(names) != 1:
        raise EngineError(
            f"{engine.manifest_path}: an ensemble member needs exactly one image input besides the "
            f"dropout mask, found {names}; re-export the member with the segmentation I/O contract"
        )
    return names[0]


def _infer_chunked(engine: Engine, feed: dict[str, np.ndarray], output: str) -> np.ndarray:
    """One call, or several only when the engine's max batch (a TensorRT profile) forces it."""
    batch = next(iter(feed.values())).shape[0]
    step = engine.max_batch or batch
    if step >= batch:
        return engine.infer(feed)[output]
    starts = range(0, batch, step)
    parts = [engine.infer({n: v[i : i + step] for n, v in feed.items()})[output] for i in starts]
    return np.concatenate(parts, axis=0)


class Ensemble:
    """Unweighted mean of the members' softmax output ``output`` on the same image."""

    def __init__(self, engines: Sequence[Engine], output: str = "probs") -> None:
        if not engines:
            raise EngineError("an Ensemble needs at least one engine; load members with engines.load_engine")
        self.engines = list(engines)
        self.output = output
        shapes = set()
        for eng in self.engines:
            spec = next((t for t in eng.outputs if t.name == output), None)
            if spec is None:
                raise EngineError(
                    f"{eng.manifest_path}: member has no output {output!r} "
                    f"(it has {[t.name for t in eng.outputs]}); ensemble only models with the same output"
                )
            shapes.add(spec.shape)
            _image_input(eng)
        if len(shapes) != 1:
            raise EngineError(
                f"ensemble members disagree on the {output!r} shape {sorted(map(str, shapes))}; "
                "use members exported at the same input size"
            )

    def __len__(self) -> int:
        return len(self.engines)

    def __iter__(self) -> Iterator[Engine]:
        return iter(self.engines)

    def member_outputs(self, image: np.ndarray) -> list[np.ndarray]:
        """Each member's softmax on ``image`` [batch, 1, H, W] (masks of ones where a member has one)."""
        outs = []
        for eng in self.engines:
            feed = {_image_input(eng): image}
            mc = _mc_spec(eng)
            if mc is not None:
                feed[mc["input"]] = np.ones((image.shape[0], *mc["shape"]), dtype=np.float32)
            outs.append(_infer_chunked(eng, feed, self.output))
        return outs

    def infer(self, image: np.ndarray) -> np.ndarray:
        """Mean softmax over members, same shape as one member's output."""
        outs = self.member_outputs(image)
        return np.stack(outs, axis=0).mean(axis=0, dtype=np.float64).astype(np.float32)

    def close(self) -> None:
        for eng in self.engines:
            eng.close()


@dataclass
class McDropoutResult:
    """MC-dropout statistics of ONE frame (no batch axis). Unpacks as ``mean, std = result``.

    ``mean`` [C,H,W]: mean softmax over all samples; ``std`` [H,W]: per-pixel std of the probability
    of the class the mean predicts; ``per_class_std`` [C,H,W]; ``covid_std`` [H,W]: std of the
    summed probability of the COVID classes 1–3 (how unsure the model is that a marker is there);
    ``samples`` [K,C,H,W] (mode ``ensemble``) or [M·K,C,H,W] (``mixture``) when asked for.
    """

    mean: np.ndarray
    std: np.ndarray
    per_class_std: np.ndarray
    covid_std: np.ndarray
    n_samples: int
    samples: np.ndarray | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.mean, self.std))


def mc_dropout(
    engines: Ensemble | Engine | Sequence[Engine],
    image: np.ndarray,
    k: int,
    seed: int | np.random.Generator | None = None,
    *,
    output: str = "probs",
    covid_classes: Sequence[int] = COVID_CLASSES,
    keep_samples: bool = False,
    mode: str = "ensemble",
) -> McDropoutResult:
    """K MC-dropout samples of one frame per member, ONE batched call per member.

    ``mode``: ``"ensemble"`` (K samples, each the members' mean) or ``"mixture"`` (M·K samples).

    ``image`` is one preprocessed frame [1, 1, H, W]. Each member must declare
    ``parameters.mc_dropout`` (input name, p, per-sample shape) in its manifest.
    """
    if isinstance(engines, Ensemble):
        members = engines.engines
    elif isinstance(engines, Engine):
        members = [engines]
    else:
        members = list(engines)
    if not members:
        raise EngineError("mc_dropout needs at least one engine")
    if mode not in ("ensemble", "mixture"):
        raise ValueError(f"mode {mode!r}: use 'ensemble' or 'mixture'")
    if k < 1:
        raise ValueError(f"k={k}: take at least one MC-dropout sample")
    image = np.asarray(image)
    if image.ndim < 2 or image.shape[0] != 1:
        raise EngineInputError(
            f"mc_dropout takes ONE frame with a batch axis of 1, got shape {image.shape}; "
            "pass x[None] or x[i:i+1]"
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    batch = np.repeat(image, k, axis=0)
    samples = []
    for eng in members:
        mc = _mc_spec(eng)
        if mc is None:
            raise EngineError(
                f"{eng.manifest_path}: no parameters.mc_dropout in the manifest, so it cannot be sampled; "
                "re-export the member with a dropout_mask input (docs/engines.md, 'Ensembles and MC dropout')"
            )
        p = float(mc["p"])
        keep = rng.random((k, *mc["shape"])) >= p
        mask = keep.astype(np.float32) * np.float32(1.0 / (1.0 - p))
        samples.append(_infer_chunked(eng, {_image_input(eng): batch, mc["input"]: mask}, output))
    if mode == "ensemble":
        stack = np.stack(samples, axis=0).mean(axis=0, dtype=np.float64)  # [K, C, H, W]
    else:
        stack = np.concatenate(samples, axis=0)  # [M*K, C, H, W]
    mean = stack.mean(axis=0, dtype=np.float64)
    per_class_std = stack.std(axis=0, dtype=np.float64)
    pred = np.argmax(mean, axis=0)
    std = np.take_along_axis(per_class_std, pred[None], axis=0)[0]
    covid_std = stack[:, list(covid_classes)].sum(axis=1, dtype=np.float64).std(axis=0)
    return McDropoutResult(
        mean=mean.astype(np.float32),
        std=std.astype(np.float32),
        per_class_std=per_class_std.astype(np.float32),
        covid_std=covid_std.astype(np.float32),
        n_samples=int(stack.shape[0]),
        samples=stack.astype(np.float32) if keep_samples else None,
    )
