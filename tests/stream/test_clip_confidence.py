"""The clip confidence means something on any length of clip, and ties are reported as ties.

* a 600-frame simulator clip through the real engine with the shipped real-scan aggregator (τ): the last
  clip probabilities are far from uniform, their argmax is the published score; the paper's softmax(v)
  of the same recorded frame probabilities is uniform to 1e-3 (the defect the temperature fixes);
* ties: folds that saturate alike (two scores at exactly 1) or equal order logits give ``tie() ==
  [scores]``, the score is the lowest of them, and the wire refuses a tie whose score is not its lowest.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream import wire
from stream.aggregate import (
    ArgmaxMeanClipAggregator,
    MaxArgmaxClipAggregator,
    UninormClipAggregator,
    make_aggregator,
)
from stream.recorder import read_results

REPO = Path(__file__).resolve().parents[2]


def _free() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.timeout(180)
def test_long_simulator_clip_keeps_an_informative_clip_probability(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    engines.mkdir()
    (engines / "frame").symlink_to(REPO / "models" / "frame", target_is_directory=True)
    params = json.loads((REPO / "models" / "frame" / "aggregator.json").read_text())["parameters"]
    assert params["temperature"] > 0
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "--synthetic", "--as-fast-as-possible", "--max-frames", "600",
         "--engines", str(engines), "--record", str(tmp_path / "rec"), "--pub", _free(), "--ctrl", "none",
         "--threads", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = read_results(next((tmp_path / "rec").glob("*.lusr.msgpack")), validate=True)
    videos = [r.msg for r in rec.topic("video")]
    assert len(videos) == 600 and videos[-1]["frames"] == 600
    last = np.array(videos[-1]["probs"])
    assert last.max() - last.min() > 0.1, last  # informative, not 0.25 each
    if not videos[-1]["tie"]:
        assert videos[-1]["score"] == int(np.argmax(last))
    paper = UninormClipAggregator(params["neutral_elements"])  # the same frames, no temperature
    for r in rec.topic("frame"):
        paper.update(r.msg["probs"])
    assert paper.score() == videos[-1]["score"]  # same exact ordering, same score
    # and the confidence stays informative along the clip, not only at its end
    spreads = [max(v["probs"]) - min(v["probs"]) for v in videos[100::100]]
    assert min(spreads) > 0.1, spreads


def test_folds_sinking_together_stay_informative_with_the_temperature() -> None:
    """The defect seen on a real clip: frames that each favour a different score drive all four folds
    towards 0, and softmax(v) reads 0.25 each after a few dozen frames. The calibrated probabilities keep
    the order logits' information: they are not uniform and their argmax is the score."""
    es = json.loads((REPO / "models" / "frame" / "aggregator.json").read_text())["parameters"]
    paper = UninormClipAggregator(es["neutral_elements"])
    calibrated = UninormClipAggregator(es["neutral_elements"], temperature=es["temperature"])
    rng = np.random.default_rng(0)
    for _ in range(495):
        c = rng.choice(4, p=[0.15, 0.55, 0.2, 0.1])
        frame = np.full(4, 0.08)
        frame[c] = 0.76
        paper.update(frame)
        calibrated.update(frame)
    assert np.allclose(paper.value(), 0.25, atol=1e-6)  # what the viewer showed: clip 0 (0.25, 495 fr)
    p = calibrated.value()
    assert calibrated.score() == paper.score() == 1 == int(np.argmax(p)) and calibrated.tie() == []
    assert p.max() - p.min() > 0.05, p  # modest (τ = 0.75 was learned on real clips) but not uniform


def test_two_scores_saturating_alike_are_a_tie() -> None:
    agg = UninormClipAggregator([0.2, 0.2, 0.2, 0.2], temperature=0.75)
    for _ in range(50):
        agg.update([0.0, 1.0, 1.0, 0.0])  # both folds reach exactly 1: no order between 1 and 2
    assert agg.tie() == [1, 2] and agg.score() == 1
    p = agg.value()
    assert p[1] == pytest.approx(p[2]) and p[1] > 0.45
    agg.update([0.0, 0.4, 0.6, 0.0])  # still both exactly 1
    assert agg.tie() == [1, 2]


def test_equal_order_logits_are_a_tie_and_a_tiny_difference_is_not() -> None:
    agg = UninormClipAggregator([0.5, 0.5, 0.5, 0.5])
    for _ in range(10):  # every frame below e: conjunctive folds, log v = log e + Σ log(p/e)
        agg.update([0.05, 0.1, 0.1, 0.05])
    assert agg.tie() == [1, 2] and agg.score() == 1
    agg.update([0.05, 0.1, 0.1 * (1 + 1e-12), 0.05])  # a hair more for score 2: ordered, no tie
    assert agg.tie() == [] and agg.score() == 2


def test_baselines_and_windows_report_ties() -> None:
    mean = ArgmaxMeanClipAggregator()
    assert mean.tie() == [0, 1, 2, 3]  # nothing seen: no score leads
    mean.update([0.1, 0.4, 0.4, 0.1])
    assert mean.tie() == [1, 2] and mean.score() == 1
    mean.update([0.0, 0.0, 1.0, 0.0])
    assert mean.tie() == [] and mean.score() == 2
    hard = MaxArgmaxClipAggregator()
    assert hard.tie() == [0, 1, 2, 3]
    hard.update([0.0, 0.2, 0.8, 0.0])
    assert hard.tie() == [] and hard.score() == 2
    win = make_aggregator("uninorm", [0.2, 0.2, 0.2, 0.2], window_frames=3, temperature=1.0)
    for _ in range(5):
        win.update([0.0, 1.0, 1.0, 0.0])
    assert win.tie() == [1, 2] and win.score() == 1
    for _ in range(3):  # the tie leaves the window
        win.update([0.0, 0.9, 0.1, 0.0])
    assert win.tie() == [] and win.score() == 1


def test_wire_checks_the_tie() -> None:
    msg, _ = wire.example("video")
    for tie, score in (([], 2), ([1, 2], 1), ([0, 1, 2, 3], 0)):
        wire.validate("video", msg | {"tie": tie, "score": score})
    for tie, score, why in (([1, 2], 2, "lowest tied score"), ([2], 2, "distinct scores"),
                            ([2, 1], 1, "ascending"), ([1, 1], 1, "distinct"), ([0, 4], 0, "<= 3")):
        with pytest.raises(wire.WireError, match=why):
            wire.validate("video", msg | {"tie": tie, "score": score})
