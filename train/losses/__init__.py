"""Losses of Roy et al. 2020: SORD soft ordinal targets (eq. (3)–(4)) and the Reg-STN joint loss (eq. (7))."""

from train.losses.frame_loss import FrameLoss, FrameLossWeights
from train.losses.sord import sord_loss, sord_targets

__all__ = ["FrameLoss", "FrameLossWeights", "sord_loss", "sord_targets"]
