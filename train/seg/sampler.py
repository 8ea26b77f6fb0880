"""Batches balanced across scores and patients (Roy et al. 2020 §IV-C.4).

The authors drew frame scores in the repeating pattern 0, 0, 0, 1, 2, 3 within each batch (score 0
frames carry the healthy pleural line and A-lines, the most common annotation); for each slot the
sampler picks the score from the pattern, then a patient uniformly among those with frames of that
score, then a frame of that patient and score uniformly — so neither long videos nor frequent
scores dominate. A score missing from the data is skipped (its slots go to the next score in the
pattern). The sampler yields a flat index sequence (``DataLoader(batch_size=B)`` cuts batches)
and has a ``generator`` so :class:`train.distributed.ShardedSampler` can reseed it per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

PAPER_PATTERN: tuple[int, ...] = (0, 0, 0, 1, 2, 3)


class BalancedSampler(Sampler[int]):
    """Draw ``num_samples`` indices with scores following ``pattern`` and patients uniform."""

    def __init__(
        self,
        scores: Sequence[int],
        patients: Sequence[str],
        num_samples: int,
        pattern: Sequence[int] = PAPER_PATTERN,
        seed: int = 0,
    ) -> None:
        scores = np.asarray(scores, dtype=np.int64)
        patients = np.asarray(patients)
        if len(scores) != len(patients) or len(scores) == 0:
            raise ValueError(
                f"BalancedSampler needs equal, non-zero numbers of scores ({len(scores)}) "
                f"and patients ({len(patients)})"
            )
        self.num_samples = int(num_samples)
        self.generator = torch.Generator().manual_seed(seed)
        # score -> list of (per-patient index arrays)
        self.groups: dict[int, list[np.ndarray]] = {}
        for s in sorted(set(scores.tolist())):
            per_patient = [
                np.flatnonzero((scores == s) & (patients == p)) for p in sorted(set(patients[scores == s]))
            ]
            self.groups[int(s)] = per_patient
        self.pattern = [int(s) for s in pattern if int(s) in self.groups]
        if not self.pattern:
            raise ValueError(
                f"none of the pattern's scores {list(pattern)} occur in the data "
                f"(scores present: {sorted(self.groups)})"
            )

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = self.generator
        for i in range(self.num_samples):
            per_patient = self.groups[self.pattern[i % len(self.pattern)]]
            frames = per_patient[int(torch.randint(len(per_patient), (1,), generator=g))]
            yield int(frames[int(torch.randint(len(frames), (1,), generator=g))])
