"""The exam protocols' vocabulary: zone tables, zone labels, exam states and events (a leaf module).

It imports nothing from ``stream``, so both :mod:`stream.wire` (which builds the ``exam`` topic's schema
from these tables) and :mod:`stream.exam` (the state machine) can import it without an import cycle.

Protocols (a score 0-3 per zone, the LUS score is the sum)::

    soldati14: RP1 RP2 RP3 RL1 RL2 RA1 RA2  LP1 LP2 LP3 LL1 LL2 LA1 LA2   (Soldati et al. 2020, max 42)
    soldati12: RP1 RP2     RL1 RL2 RA1 RA2  LP1 LP2     LL1 LL2 LA1 LA2   (max 36)
    blue6:     L1 L2 L3  R1 R2 R3                                          (BLUE protocol points, max 18)

Soldati names are side (``R``/``L``), region (``P``osterior, ``L``ateral, ``A``nterior) and index from
cranial to caudal. BLUE names (as the COVID-BLUES dataset records them) are side and point of
Lichtenstein's BLUE protocol: ``1`` the upper BLUE point, ``2`` the lower BLUE point (both anterior),
``3`` the PLAPS point (posterolateral alveolar and/or pleural syndrome point).
"""

from __future__ import annotations

from collections.abc import Sequence

N_SCORES = 4
MAX_ZONE_SCORE = N_SCORES - 1

SIDES = {"R": "right", "L": "left"}
REGIONS = {"P": "posterior", "L": "lateral", "A": "anterior"}
BLUE_POINTS = {"1": "upper BLUE point", "2": "lower BLUE point", "3": "PLAPS point"}


def _soldati(per_side: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    return tuple(f"{side}{region}{i}" for side in SIDES for region, n in per_side for i in range(1, n + 1))


PROTOCOLS: dict[str, tuple[str, ...]] = {
    "soldati14": _soldati([("P", 3), ("L", 2), ("A", 2)]),
    "soldati12": _soldati([("P", 2), ("L", 2), ("A", 2)]),
    "blue6": ("L1", "L2", "L3", "R1", "R2", "R3"),
}
PROTOCOL_TITLES = {
    "soldati14": "Soldati 14 zones",
    "soldati12": "Soldati 12 zones",
    "blue6": "BLUE protocol, 6 points",
}
DEFAULT_PROTOCOL = "soldati14"
EXAM_STATES = ("idle", "running", "stopped")
EVENTS = ("start", "zone", "freeze", "redo", "stop", "update")


def is_blue_zone(name: str) -> bool:
    """``"L3"`` → True (a BLUE point), ``"LP3"`` → False (a Soldati zone)."""
    return len(name) == 2 and name[0] in SIDES and name[1] in BLUE_POINTS


def zone_label(name: str) -> str:
    """``"RP2"`` → ``"right posterior 2"``; ``"L3"`` → ``"left PLAPS point"``."""
    if is_blue_zone(name):
        return f"{SIDES[name[0]]} {BLUE_POINTS[name[1]]}"
    return f"{SIDES[name[0]]} {REGIONS[name[1]]} {name[2:]}"


def max_total(protocol: str) -> int:
    """The largest LUS score of a protocol (3 per zone)."""
    return MAX_ZONE_SCORE * len(PROTOCOLS[protocol])


def protocol_for(n_zones: int) -> str:
    """The protocol with ``n_zones`` zones (14 → soldati14, 12 → soldati12, 6 → blue6)."""
    for name, zones in PROTOCOLS.items():
        if len(zones) == n_zones:
            return name
    raise ValueError(f"no protocol has {n_zones} zones: {({k: len(v) for k, v in PROTOCOLS.items()})}")
