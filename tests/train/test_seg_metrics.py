"""Table IV metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np

from train.seg.metrics import SegMeter, evaluate_maps


def test_hand_computed_accuracy_and_dice() -> None:
    label = np.array([[4, 4, 0, 0], [2, 2, 3, 4], [1, 4, 4, 4]])
    pred = np.array([[4, 0, 0, 4], [2, 3, 3, 3], [4, 4, 4, 1]])
    r = evaluate_maps(pred, label)
    # correct: (0,0),(0,2),(1,0),(1,2),(2,1),(2,2) -> 6 of 12
    assert r["pixel_accuracy"] == 6 / 12
    # COVID {1,2,3}: label at (1,0),(1,1),(1,2),(2,0) = 4; pred at (1,0),(1,1),(1,2),(1,3),(2,3) = 5; both 3
    assert math.isclose(r["covid_dice"], 2 * 3 / (4 + 5))
    # class 0: label (0,2),(0,3); pred (0,1),(0,2) -> 2*1/4; class 2: label 2, pred 1, inter 1 -> 2/3
    # class 3: label (1,2); pred (1,1),(1,2),(1,3) -> 2*1/4
    assert math.isclose(r["dice_score0"], 0.5)
    assert math.isclose(r["dice_score2"], 2 / 3)
    assert math.isclose(r["dice_score3"], 0.5)
    assert math.isclose(r["categorical_dice"], (0.5 + 2 / 3 + 0.5) / 3)


def test_batches_pool_and_absent_classes_are_left_out() -> None:
    a_lab = np.array([[3, 4]])
    a_pred = np.array([[3, 4]])
    b_lab = np.array([[4, 3]])
    b_pred = np.array([[3, 4]])
    m = SegMeter()
    m.update(a_pred, a_lab)
    m.update(b_pred, b_lab)
    r = m.result()
    assert r["pixel_accuracy"] == 0.5
    assert math.isclose(r["dice_score3"], 2 * 1 / (2 + 2))
    assert math.isnan(r["dice_score0"]) and math.isnan(r["dice_score2"])
    assert math.isclose(r["categorical_dice"], 0.5)  # mean over the classes present only
