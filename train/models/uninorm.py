"""Learned min-uninorm clip aggregation (Roy et al. 2020, §IV-B, Eq. 8–9).

A uninorm ``U_e`` with neutral element ``e`` and the product t-norm / t-conorm, ``Û = min``::

    U_e(a, b) = a·b / e                          a, b ∈ [0, e]    (e·T(a/e, b/e),  T(x, y) = x·y)
              = 1 − (1 − a)(1 − b) / (1 − e)     a, b ∈ [e, 1]    (e + (1−e)·S(u, v), S = u + v − uv)
              = min(a, b)                        otherwise

The clip aggregate of score ``c`` is the fold ``U_{e_c}(…U_{e_c}(U_{e_c}(e_c, p_1c), p_2c)…, p_Tc)`` over
the clip's frame probabilities; the four aggregates are the logits of a softmax (the video prediction).

Because the min-uninorm is associative and ``min`` picks the conjunctive part as soon as one value is
below ``e``, the fold has a closed form. Let ``L = {p_t < e}`` and ``H = {p_t > e}`` (values equal to
``e`` are neutral)::

    fold = e · Π_{t∈L} (p_t / e)                               if L ≠ ∅
         = 1 − (1 − e) · Π_{t∈H} ((1 − p_t) / (1 − e))         if L = ∅
         (= e when both are empty)

:func:`uninorm_fold` evaluates it in the log domain (sums of ``log(p/e)`` and ``log((1−p)/(1−e))``),
so long clips neither underflow nor saturate in the state, and gradients reach ``e`` through both
products. :func:`uninorm` (binary) and :func:`uninorm_fold_sequential` are the literal definitions,
kept as references for tests. ``e = 0`` and ``e = 1`` are handled without dividing by zero.
"""

from __future__ import annotations

import torch
from torch import nn

N_SCORES = 4
_TINY = 1e-30  # floor for logs of exact zeros (float32-safe); only reached at p ∈ {0, 1} exactly


def uninorm(a: torch.Tensor, b: torch.Tensor, e: torch.Tensor | float) -> torch.Tensor:
    """The binary min-uninorm ``U_e(a, b)`` with product t-norm/t-conorm (elementwise, broadcasting)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    e = torch.as_tensor(e, dtype=a.dtype, device=a.device)
    both_low = (a <= e) & (b <= e)
    both_high = (a >= e) & (b >= e)
    # Safe denominators: a branch's formula is only used where its region applies, and there the
    # denominator is positive (both ≤ e = 0 means a = b = 0; both ≥ e = 1 means a = b = 1).
    e_low = torch.where(e > 0, e, torch.ones_like(e))
    e_high = torch.where(e < 1, 1 - e, torch.ones_like(e))
    low = torch.where(e > 0, a * b / e_low, torch.zeros_like(a * b))
    high = torch.where(e < 1, 1 - (1 - a) * (1 - b) / e_high, torch.ones_like(a * b))
    return torch.where(both_low, low, torch.where(both_high, high, torch.minimum(a, b)))


def uninorm_fold_sequential(values: torch.Tensor, e: torch.Tensor | float) -> torch.Tensor:
    """Literal left fold of :func:`uninorm` over dim 0 of ``values`` ([T, ...]), starting from ``e``."""
    e = torch.as_tensor(e, dtype=values.dtype, device=values.device)
    state = e.expand(values.shape[1:]).clone()
    for row in values:
        state = uninorm(state, row, e)
    return state


def uninorm_log_state(
    values: torch.Tensor, e: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-domain state of the fold over dim ``-2`` of ``values`` ([..., T, C]) with ``e`` ([C]).

    Returns ``(n_low, log_low, log_high)``, each [..., C]: the number of values below ``e``,
    ``Σ_{p<e} log(p/e)`` and ``Σ_{p>e} log((1−p)/(1−e))``. ``mask`` ([..., T], True = frame present)
    leaves padded frames out (they act as the neutral element).
    """
    low = values < e
    high = values > e
    if mask is not None:
        low = low & mask[..., None]
        high = high & mask[..., None]
    # Each log is taken on a clamped, always-valid argument and then masked, so neither the value
    # nor the gradient of an unused branch can be NaN (torch.where would propagate 0·inf).
    log_e = torch.log(e.clamp_min(_TINY))
    log_1me = torch.log((1 - e).clamp_min(_TINY))
    log_p = torch.log(values.clamp_min(_TINY))
    log_1mp = torch.log((1 - values).clamp_min(_TINY))
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    log_low = torch.where(low, log_p - log_e, zero).sum(dim=-2)
    log_high = torch.where(high, log_1mp - log_1me, zero).sum(dim=-2)
    return low.sum(dim=-2), log_low, log_high


def state_to_aggregate(
    n_low: torch.Tensor, log_low: torch.Tensor, log_high: torch.Tensor, e: torch.Tensor
) -> torch.Tensor:
    """The fold's value from its log-domain state (see the module docstring)."""
    t_part = e * torch.exp(log_low)
    s_part = 1 - (1 - e) * torch.exp(log_high)
    return torch.where(n_low > 0, t_part, s_part)


def state_to_logit(
    n_low: torch.Tensor, log_low: torch.Tensor, log_high: torch.Tensor, e: torch.Tensor
) -> torch.Tensor:
    """``log(v) − log(1 − v)`` of the fold's value ``v``, exact even where ``v`` rounds to 0 or 1.

    It orders the aggregates exactly (ties in ``v`` that are only rounding are broken correctly), so
    the predicted score is its argmax.
    """
    log_e = torch.log(e.clamp_min(_TINY))
    log_1me = torch.log((1 - e).clamp_min(_TINY))
    # Low region: log v = log e + log_low, log(1 − v) = log1p(−v).
    log_v_low = log_e + log_low
    logit_low = log_v_low - torch.log1p(-torch.exp(log_v_low).clamp_max(1 - 1e-16))
    # High region: log(1 − v) = log(1 − e) + log_high, log v = log1p(−(1 − v)).
    log_1mv_high = log_1me + log_high
    logit_high = torch.log1p(-torch.exp(log_1mv_high).clamp_max(1 - 1e-16)) - log_1mv_high
    return torch.where(n_low > 0, logit_low, logit_high)


def uninorm_fold(values: torch.Tensor, e: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Closed-form fold of the min-uninorm over dim ``-2`` ([..., T, C] → [..., C]); equals the
    sequential fold, computed in the log domain."""
    return state_to_aggregate(*uninorm_log_state(values, e, mask), e)


class UninormAggregator(nn.Module):
    """Clip aggregation layer: per-score learned neutral elements, min-uninorm fold, softmax.

    ``forward(probs [B, T, 4], mask [B, T] | None) -> video probabilities [B, 4]``. The raw
    parameter is clamped to [0, 1] by :meth:`clamp_`, which the trainer calls after every optimiser
    step; it starts at ``init`` (0 as published: the fold is then the probabilistic sum, "max-like").
    """

    def __init__(self, n_scores: int = N_SCORES, init: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= init <= 1.0:
            raise ValueError(f"UninormAggregator: init={init} must be in [0, 1]")
        self.e = nn.Parameter(torch.full((n_scores,), float(init)))

    @property
    def neutral_elements(self) -> list[float]:
        return [float(v) for v in self.e.detach().clamp(0, 1).cpu()]

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project the neutral elements back into [0, 1] (call after each optimiser step)."""
        self.e.clamp_(0.0, 1.0)

    def aggregates(self, probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The per-score uninorm folds (the softmax's logits), [B, T, C] → [B, C]."""
        if probs.shape[-1] != self.e.shape[0]:
            raise ValueError(
                f"UninormAggregator: probs has {probs.shape[-1]} scores, expected {self.e.shape[0]}"
            )
        return uninorm_fold(probs, self.e.to(probs.dtype), mask)

    def order_logits(self, probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Exact ordering key of the aggregates (their logit); ``argmax`` of it is the predicted score."""
        e = self.e.to(probs.dtype)
        return state_to_logit(*uninorm_log_state(probs, e, mask), e)

    def forward(self, probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.aggregates(probs, mask), dim=-1)
