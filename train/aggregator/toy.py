"""A toy ``--frame-probs`` set: synthetic clips scored by a simulated, imperfect frame classifier.

Stands in for a real frame model's output in tests and end-to-end runs. Each clip has a label L; a
fraction of its frames (``show_min``–``show_max``) shows L, the rest show lower scores (the paper's
rule: a clip's score is its worst finding). A simulated frame classifier is right with probability
``frame_accuracy``, otherwise off by one (most errors, ``near_errors``) or random; its output looks
like a SORD-trained network's, ``softmax(log SORD(pred) + N(0, noise²))`` (SORD targets with m = 2,
gap 0: the neighbours of the predicted score keep some mass, far scores almost none). This reproduces
the situation of §V-B: the hard rule (``max_argmax``) over-predicts on isolated false positives, the
mean under-predicts clips where few frames show the finding.
"""

from __future__ import annotations

import numpy as np

from train.aggregator.data import ClipProbs


def toy_clips(
    seed: int = 0,
    n_patients: int = 30,
    clips_per_patient: int = 4,
    frames: tuple[int, int] = (40, 120),
    show_min: float = 0.15,
    show_max: float = 0.6,
    frame_accuracy: float = 0.8,
    near_errors: float = 0.85,
    noise: float = 1.0,
) -> list[ClipProbs]:
    rng = np.random.default_rng(seed)
    pos = np.arange(4.0)
    log_sord = -2.0 * (pos[:, None] - pos[None, :]) ** 2
    log_sord -= np.log(np.exp(log_sord).sum(axis=1, keepdims=True))
    clips = []
    for p in range(n_patients):
        severity = rng.integers(0, 4)  # patients differ: labels cluster around a patient severity
        for k in range(clips_per_patient):
            label = int(np.clip(severity + rng.integers(-1, 2), 0, 3))
            n = int(rng.integers(frames[0], frames[1] + 1))
            true = rng.integers(0, label, size=n) if label > 0 else np.zeros(n, dtype=int)
            shown = round(n * rng.uniform(show_min, show_max))
            start = int(rng.integers(0, n - shown + 1))
            true[start : start + shown] = label
            pred = true.copy()
            wrong = rng.random(n) > frame_accuracy
            near = rng.random(n) < near_errors
            step = rng.choice([-1, 1], size=n)
            pred[wrong & near] = np.clip(true[wrong & near] + step[wrong & near], 0, 3)
            far = wrong & ~near
            pred[far] = rng.integers(0, 4, size=int(far.sum()))
            logits = log_sord[pred] + rng.normal(0.0, noise, size=(n, 4))
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            clips.append(ClipProbs(f"toy_p{p:03d}_c{k}", f"toy_p{p:03d}", label, probs))
    return clips
