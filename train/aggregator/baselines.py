"""The paper's clip-aggregation baselines (§V-B, Tables II/III), on a clip's frame probabilities [T, 4].

- ``max_argmax``: the hard rule — each frame's most probable score, the clip gets the highest one.
- ``argmax_mean``: the score with the highest mean probability over the clip's frames.
"""

from __future__ import annotations

import numpy as np


def max_argmax(probs: np.ndarray) -> int:
    return int(np.argmax(probs, axis=1).max())


def argmax_mean(probs: np.ndarray) -> int:
    return int(np.argmax(probs.mean(axis=0)))


BASELINES = {"max_argmax": max_argmax, "argmax_mean": argmax_mean}
