"""The runtime's numpy streaming aggregator equals the trainable torch layer frame by frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream.aggregate import make_aggregator
from train.models.uninorm import UninormAggregator


@pytest.mark.parametrize("seed", range(5))
def test_streaming_equals_torch_layer_on_random_sequences(seed):
    rng = np.random.default_rng(seed)
    es = rng.uniform(0, 0.6, 4).tolist()
    probs = rng.dirichlet(np.full(4, 0.5), size=int(rng.integers(1, 120)))
    layer = UninormAggregator().double()
    with torch.no_grad():
        layer.e.copy_(torch.tensor(es, dtype=torch.float64))
    stream = make_aggregator("uninorm", es)
    x = torch.from_numpy(probs)[None]
    for n in range(1, len(probs) + 1):
        out = stream.update(probs[n - 1])
        if n % 7 == 0 or n == len(probs):
            with torch.no_grad():
                np.testing.assert_allclose(out, layer(x[:, :n])[0].numpy(), rtol=0, atol=1e-9)
                np.testing.assert_allclose(
                    stream.aggregates(), layer.aggregates(x[:, :n])[0].numpy(), atol=1e-9
                )
                assert stream.score() == int(layer.order_logits(x[:, :n]).argmax())
