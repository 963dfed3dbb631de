"""Trial designs of the three studies (SPEC §5) and balanced assignment: pure functions, no database.

Everything a participant sees is decided here at enrolment from their seed and the
current counts of the balancing cells (a cell is a stimulus and condition, e.g.
``"item-003|smart~l2"``; the counts come from completed, non-excluded participants
only):

* **Deceitfulness**: ``n`` trials of one attacked variant (default SMART) on items it
  fooled the model on; each shows the two labels (true, attacked) in random order. The
  items are chosen so that, for this participant, every class is as often the true label
  as the attacked one (as far as the batch allows): then which label is which cannot be
  told from how often a label turns up (:class:`LabelBalancedPicker`).
* **Naturalness**: ``n / 2`` motions, each twice: SMART vs one ablation, and two
  different ablations; which ablation(s) are balanced across participants; sides random.
* **Indistinguishability**: ``round(n * sensitivity_share)`` sensitivity trials
  (original | original), ``round(n * control_share)`` positive controls
  (original | control) and the rest perceivability trials (original | attacked); the
  left clip is always the original. Rounding is half up. Its ``procedure`` says which
  attacked clips: ``fixed``, the variants named; ``constant`` (the method of constant
  stimuli), every graded level of each method named, each level as often for every
  participant (to one) and the items balanced within each level; ``adaptive``, the
  methods in turn, each trial's level chosen by QUEST+ (:mod:`stimuli.adaptive`) when the
  trial comes up, from the participant's answers so far (:func:`study_server.studies`).

Practice trials (not analysed, not counted for balancing) come first; the analysed
trials follow in a seeded random order.

Balancing (:class:`BalancedPicker`): each pick takes, among the candidates, the cell
this participant has used least, then the least-filled across participants, ties
broken by a seeded random rank, and counts it. So a participant sees every cell once
before any twice, and the cells that have the fewest usable participants so far are
filled first.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Hashable
from typing import Iterable
from typing import Mapping
from typing import Sequence

__all__ = [
    "DECEITFULNESS",
    "NATURALNESS",
    "INDISTINGUISHABILITY",
    "STUDY_TYPES",
    "SMART",
    "ItemInfo",
    "TrialSpec",
    "BalancedPicker",
    "LabelBalancedPicker",
    "balanced_pick",
    "split_counts",
    "design_deceitfulness",
    "design_naturalness",
    "design_indistinguishability",
    "kinds_count",
    "COMBINED",
    "DESIGNS",
    "cell_rates",
    "condition_of",
]

DECEITFULNESS = "deceitfulness"
NATURALNESS = "naturalness"
INDISTINGUISHABILITY = "indistinguishability"
STUDY_TYPES = (DECEITFULNESS, NATURALNESS, INDISTINGUISHABILITY)
COMBINED = "combined"
"""A session of blocks, each one of the three designs with its own settings and instructions."""
DESIGNS = (*STUDY_TYPES, COMBINED)
SMART = "smart"
ORIGINAL = "original"


@dataclass(frozen=True)
class ItemInfo:
    """What the designs need to know about one batch item."""

    item_id: str
    true_label: str
    final_labels: Mapping[str, str | None] = field(default_factory=dict)
    """Attacked variant -> the label the model gave it."""
    success: Mapping[str, bool | None] = field(default_factory=dict)

    def deceives(self, variant: str) -> bool:
        """The attack ``variant`` succeeded and gave a label other than the true one."""
        label = self.final_labels.get(variant)
        return bool(self.success.get(variant)) and label is not None and label != self.true_label


@dataclass(frozen=True)
class TrialSpec:
    """One planned trial; ``stimulus`` names the video: a variant, or a composite ``left|right``."""

    design: str
    kind: str
    item_id: str
    cell: str
    stimulus: str
    true_label: str
    practice: bool = False
    variant: str | None = None
    left_variant: str | None = None
    right_variant: str | None = None
    attacked_label: str | None = None
    label_order: str | None = None
    naturalness_pair: str | None = None
    method: str | None = None
    """Graded trials: the attack method of the right-hand clip."""
    strength: float | None = None
    """Graded trials: its strength (None for an adaptive trial until its level is chosen)."""
    procedure: str | None = None
    """Indistinguishability: ``fixed``, ``constant`` or ``adaptive``."""


PROCEDURES = ("fixed", "constant", "adaptive")
"""How the perceivability trials' attacked clips are chosen (see the module docstring)."""
Levels = Mapping[str, Sequence[tuple[str, float]]]
"""Method -> its graded variants ``(variant, strength)``, weakest first (the method's own variant at 1)."""


# ---- balancing --------------------------------------------------------------------------------
class BalancedPicker:
    """Picks cells least-used by this participant, then least-filled overall; ties by a seeded rank.

    ``counts`` are the cells' counts over usable participants (missing = 0). Each pick
    adds one to the cell's count here (not in the caller's mapping).
    """

    def __init__(self, counts: Mapping[Hashable, int], seed: int | str):
        self._total = Counter(dict(counts))
        self._used: Counter[Hashable] = Counter()
        self._rng = random.Random(f"balance/{seed}")
        self._rank: dict[Hashable, float] = {}

    def _tiebreak(self, cell: Hashable) -> float:
        if cell not in self._rank:
            self._rank[cell] = self._rng.random()
        return self._rank[cell]

    def pick(self, candidates: Sequence[Hashable]) -> Hashable:
        if not candidates:
            raise ValueError("BalancedPicker.pick: no candidates")
        # rank every candidate in a fixed (sorted) order first, so the result does not
        # depend on the order the caller lists them in
        for c in sorted(candidates, key=repr):
            self._tiebreak(c)
        best = min(candidates, key=lambda c: (self._used[c], self._total[c], self._rank[c]))
        self._used[best] += 1
        self._total[best] += 1
        return best


class LabelBalancedPicker(BalancedPicker):
    """A :class:`BalancedPicker` that, among the cells this participant has used least, takes the one that brings
    every class's count as the true label closest to its count as the attacked label (for this participant).

    ``labels[cell] = (true label, attacked label)``. The imbalance is the sum over classes of
    ``|times true - times attacked|``; it is 0 when no label's frequency tells the answer. On a
    tie, a cell on a cycle of the remaining cells (true -> attacked -> ... -> true, so that
    later picks can even it out) comes first.
    """

    def __init__(
        self, counts: Mapping[Hashable, int], seed: int | str, labels: Mapping[Hashable, tuple[str, str]]
    ) -> None:
        super().__init__(counts, seed)
        self._labels = labels
        self.balance: Counter[str] = Counter()
        """Per class: times shown as the true label minus times as the attacked one."""

    def _change(self, cell: Hashable) -> int:
        t, a = self._labels[cell]
        b = self.balance
        return abs(b[t] + 1) - abs(b[t]) + abs(b[a] - 1) - abs(b[a])

    def _closable(self, cell: Hashable, pool: Sequence[Hashable]) -> bool:
        """Whether the other cells of ``pool`` lead from ``cell``'s attacked label back to its true label."""
        t, a = self._labels[cell]
        edges: dict[str, set[str]] = {}
        for c in pool:
            if c != cell:
                edges.setdefault(self._labels[c][0], set()).add(self._labels[c][1])
        seen, todo = {a}, [a]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt == t:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    def pick(self, candidates: Sequence[Hashable]) -> Hashable:
        if not candidates:
            raise ValueError("LabelBalancedPicker.pick: no candidates")
        for c in sorted(candidates, key=repr):
            self._tiebreak(c)
        low = min(self._used[c] for c in candidates)
        pool = [c for c in candidates if self._used[c] == low]
        best = min(pool, key=lambda c: (self._change(c), not self._closable(c, pool), self._total[c], self._rank[c]))
        self._used[best] += 1
        self._total[best] += 1
        t, a = self._labels[best]
        self.balance[t] += 1
        self.balance[a] -= 1
        return best


def balanced_pick(cells: Sequence[Hashable], k: int, counts: Mapping[Hashable, int], seed: int | str) -> list[Hashable]:
    """``k`` cells from ``cells``: each round uses every cell once, least-filled first (see module docstring).

    >>> balanced_pick(["a", "b", "c"], 2, {"a": 2, "c": 1}, seed=0)
    ['b', 'c']
    """
    if k < 0:
        raise ValueError(f"balanced_pick: k must be >= 0, got {k}")
    if k and not cells:
        raise ValueError("balanced_pick: no cells to pick from")
    picker = BalancedPicker(counts, seed)
    return [picker.pick(cells) for _ in range(k)]


def split_counts(n: int, shares: Sequence[float]) -> list[int]:
    """``floor(n * share + 0.5)`` per share, and the rest as the last entry.

    >>> split_counts(10, [0.2, 0.1])
    [2, 1, 7]
    """
    parts = [int(math.floor(n * s + 0.5)) for s in shares]
    rest = n - sum(parts)
    if rest < 0:
        raise ValueError(f"shares {list(shares)} of {n} trials leave no room ({rest})")
    return parts + [rest]


# ---- helpers ---------------------------------------------------------------------------------
def _rng(seed: int | str, purpose: str) -> random.Random:
    return random.Random(f"{purpose}/{seed}")


def _finish(practice: list[TrialSpec], main: list[TrialSpec], seed: int | str) -> list[TrialSpec]:
    main = list(main)
    _rng(seed, "order").shuffle(main)
    return practice + main


def _deceit_trial(item: ItemInfo, variant: str, rng: random.Random, practice: bool) -> TrialSpec:
    order = "true,attacked" if rng.random() < 0.5 else "attacked,true"
    return TrialSpec(
        DECEITFULNESS,
        DECEITFULNESS,
        item.item_id,
        f"{item.item_id}|{variant}",
        variant,
        item.true_label,
        practice=practice,
        variant=variant,
        attacked_label=item.final_labels.get(variant),
        label_order=order,
    )


def _pair_trial(item: ItemInfo, a: str, b: str, rng: random.Random, practice: bool) -> TrialSpec:
    """Naturalness trial of variants ``a`` and ``b`` (sides drawn at random)."""
    pair = "smart-vs-ablation" if SMART in (a, b) else "ablation-vs-ablation"
    first, second = sorted((a, b), key=lambda v: (v != SMART, v))
    cell = f"{item.item_id}|{first}~{second}"
    left, right = (a, b) if rng.random() < 0.5 else (b, a)
    return TrialSpec(
        NATURALNESS,
        NATURALNESS,
        item.item_id,
        cell,
        f"{left}|{right}",
        item.true_label,
        practice=practice,
        variant=right,
        left_variant=left,
        right_variant=right,
        naturalness_pair=pair,
    )


def _side_trial(item: ItemInfo, kind: str, right: str, cell: str, practice: bool, **graded: Any) -> TrialSpec:
    return TrialSpec(
        INDISTINGUISHABILITY,
        kind,
        item.item_id,
        cell,
        f"{ORIGINAL}|{right}",
        item.true_label,
        practice=practice,
        variant=right,
        left_variant=ORIGINAL,
        right_variant=right,
        attacked_label=item.final_labels.get(right),
        **graded,
    )


def _even_split(names: Sequence[str], k: int, counts: Mapping[str, int], seed: str) -> Counter[str]:
    """``k`` picks spread over ``names`` as evenly as possible (to one); the extra ones go to the least-filled."""
    base, extra = divmod(k, len(names))
    out = Counter({n: base for n in names})
    for n in balanced_pick(list(names), extra, counts, seed):
        out[n] += 1
    return out


# ---- the three designs -------------------------------------------------------------------------
def design_deceitfulness(
    items: Sequence[ItemInfo], n: int, practice: int, counts: Mapping[str, int], seed: int | str, variant: str = SMART
) -> list[TrialSpec]:
    """Practice then ``n`` trials: one attacked clip, then its true and attacked labels in random order."""
    eligible = [it for it in items if it.deceives(variant)]
    if not eligible:
        raise ValueError(f"no item where the {variant!r} attack changed the label: nothing to show")
    by_cell = {f"{it.item_id}|{variant}": it for it in eligible}
    rng = _rng(seed, "deceitfulness")
    picker = LabelBalancedPicker(
        counts, seed, {c: (it.true_label, str(it.final_labels[variant])) for c, it in by_cell.items()}
    )
    cells = list(by_cell)
    main = [_deceit_trial(by_cell[picker.pick(cells)], variant, rng, False) for _ in range(n)]
    prng = _rng(seed, "practice")
    prac = [_deceit_trial(prng.choice(eligible), variant, prng, True) for _ in range(practice)]
    return _finish(prac, main, seed)


def design_naturalness(
    items: Sequence[ItemInfo],
    n: int,
    practice: int,
    counts: Mapping[str, int],
    seed: int | str,
    ablations: Sequence[str],
    smart: str = SMART,
) -> list[TrialSpec]:
    """Practice then ``n`` trials (``n / 2`` motions): per motion SMART vs an ablation, and two ablations.

    Motions are the least-filled items (a motion's count is that of its SMART trials);
    the ablation and the ablation pair of each are balanced the same way.
    """
    if n % 2:
        raise ValueError(f"naturalness needs an even number of trials (two per motion), got {n}")
    ablations = sorted(ablations)
    if len(ablations) < 2:
        raise ValueError(f"naturalness needs at least two ablations besides {smart!r}, got {ablations}")
    if not items:
        raise ValueError("naturalness: no items")
    by_id = {it.item_id: it for it in items}
    item_counts: Counter[str] = Counter()
    for cell, c in counts.items():
        item_id, _, pair = cell.rpartition("|")
        if pair.startswith(f"{smart}~"):
            item_counts[item_id] += c
    picker = BalancedPicker(counts, seed)
    rng = _rng(seed, "naturalness")
    main: list[TrialSpec] = []
    pairs = [(a, b) for i, a in enumerate(ablations) for b in ablations[i + 1 :]]
    for item_id in balanced_pick(sorted(by_id), n // 2, item_counts, seed):
        item = by_id[item_id]
        x = picker.pick([f"{item_id}|{smart}~{a}" for a in ablations]).rpartition("~")[2]
        main.append(_pair_trial(item, smart, x, rng, False))
        a, b = picker.pick([f"{item_id}|{a}~{b}" for a, b in pairs]).rpartition("|")[2].split("~")
        main.append(_pair_trial(item, a, b, rng, False))
    prng = _rng(seed, "practice")
    prac = []
    for k in range(practice):
        item = prng.choice(list(items))
        if k % 2 == 0:
            prac.append(_pair_trial(item, smart, prng.choice(ablations), prng, True))
        else:
            a, b = prng.choice(pairs)
            prac.append(_pair_trial(item, a, b, prng, True))
    return _finish(prac, main, seed)


def design_indistinguishability(
    items: Sequence[ItemInfo],
    n: int,
    practice: int,
    counts: Mapping[str, int],
    seed: int | str,
    variants: Sequence[str],
    controls: Sequence[str],
    sensitivity_share: float,
    control_share: float,
    procedure: str = "fixed",
    levels: Levels | None = None,
) -> list[TrialSpec]:
    """Practice then ``n`` trials: left the original; right the original, an attacked clip or a control.

    ``procedure`` ``constant`` / ``adaptive``: ``variants`` are methods with graded ``levels``."""
    if not items:
        raise ValueError("indistinguishability: no items")
    n_sens, n_ctrl, n_perc = split_counts(n, [sensitivity_share, control_share])
    if n_ctrl and not controls:
        raise ValueError("indistinguishability: positive-control trials asked for, but the batch has no control")
    if n_perc and not variants:
        raise ValueError("indistinguishability: no attacked variant to show")
    by_id = {it.item_id: it for it in items}
    ids = sorted(by_id)
    main: list[TrialSpec] = []
    for cell in balanced_pick([f"sensitivity|{i}" for i in ids], n_sens, counts, f"{seed}/s"):
        item = by_id[cell.split("|")[1]]
        main.append(_side_trial(item, "sensitivity", ORIGINAL, cell, False))
    ctrl_cells = [f"control|{i}|{c}" for i in ids for c in controls]
    for cell in balanced_pick(ctrl_cells, n_ctrl, counts, f"{seed}/c"):
        _, i, c = cell.split("|")
        main.append(_side_trial(by_id[i], "control", c, cell, False))
    if procedure == "fixed":
        perc_cells = [f"perceivability|{i}|{v}" for i in ids for v in variants]
        for cell in balanced_pick(perc_cells, n_perc, counts, f"{seed}/p"):
            _, i, v = cell.split("|")
            main.append(_side_trial(by_id[i], "perceivability", v, cell, False, procedure="fixed"))
    else:
        main += _graded_trials(by_id, n_perc, counts, seed, variants, procedure, levels or {})
    # practice: a clear change (a control) first, then unchanged, then attacked, in turn
    prng = _rng(seed, "practice")
    kinds = [
        k
        for k in ("control", "sensitivity", "perceivability")
        if (k != "control" or controls) and (k != "perceivability" or variants)
    ]
    prac = []
    for k in range(practice):
        item, kind = prng.choice(list(items)), kinds[k % len(kinds)]
        right = {
            "control": lambda: prng.choice(list(controls)),
            "sensitivity": lambda: ORIGINAL,
            "perceivability": lambda: prng.choice(list(variants)),
        }[kind]()
        prac.append(_side_trial(item, kind, right, f"practice|{item.item_id}", True, procedure=procedure))
    return _finish(prac, main, seed)


def _graded_trials(
    by_id: Mapping[str, ItemInfo],
    n: int,
    counts: Mapping[str, int],
    seed: int | str,
    methods: Sequence[str],
    procedure: str,
    levels: Levels,
) -> list[TrialSpec]:
    """The perceivability trials of a threshold design: per level (constant) or per method (adaptive), as many
    for every participant (to one), items least-filled first within each."""
    if procedure not in PROCEDURES:
        raise ValueError(f"indistinguishability: procedure must be one of {', '.join(PROCEDURES)}, got {procedure!r}")
    missing = [m for m in methods if len(levels.get(m, ())) < 2]
    if missing:
        raise ValueError(
            f"indistinguishability ({procedure}): {', '.join(missing)} has no graded levels in the batch "
            "(make it with attack-gen batch --levels)"
        )
    ids = sorted(by_id)
    out: list[TrialSpec] = []
    if procedure == "constant":
        strength = {v: s for m in methods for v, s in levels[m]}
        method_of = {v: m for m in methods for v, _ in levels[m]}
        per_level: Counter[str] = Counter()
        for c, k in counts.items():
            if c.startswith("perceivability|"):
                per_level[c.rpartition("|")[2]] += k
        share = _even_split([v for m in methods for v, _ in levels[m]], n, per_level, f"{seed}/levels")
        for v, k in share.items():
            for cell in balanced_pick([f"perceivability|{i}|{v}" for i in ids], k, counts, f"{seed}/p/{v}"):
                item = by_id[cell.split("|")[1]]
                out.append(
                    _side_trial(
                        item,
                        "perceivability",
                        v,
                        cell,
                        False,
                        method=method_of[v],
                        strength=strength[v],
                        procedure=procedure,
                    )
                )
        return out
    per_method: Counter[str] = Counter()
    for c, k in counts.items():
        if c.startswith("perceivability|"):
            per_method[c.rpartition("|")[2]] += k
    share = _even_split(list(methods), n, per_method, f"{seed}/methods")
    for m, k in share.items():
        top = levels[m][-1][0]  # a placeholder until the level is chosen (the strongest: the method itself)
        for cell in balanced_pick([f"perceivability|{i}|{m}" for i in ids], k, counts, f"{seed}/p/{m}"):
            item = by_id[cell.split("|")[1]]
            out.append(_side_trial(item, "perceivability", top, cell, False, method=m, procedure=procedure))
    return out


def kinds_count(specs: Iterable[TrialSpec]) -> Counter[str]:
    """How many analysed trials of each kind (a convenience for checks and tests)."""
    return Counter(s.kind for s in specs if not s.practice)


# ---- balance targets ---------------------------------------------------------------------------
def cell_rates(
    study_type: str,
    items: Sequence[ItemInfo],
    n: int,
    *,
    variants: Sequence[str] = (SMART,),
    ablations: Sequence[str] = (),
    controls: Sequence[str] = (),
    sensitivity_share: float = 0.0,
    control_share: float = 0.0,
    smart: str = SMART,
    procedure: str = "fixed",
    levels: Levels | None = None,
) -> dict[str, float]:
    """Expected analysed trials per cell for one participant of a perfectly balanced design.

    Times the target number of participants, it is each cell's balance target: the
    designs spread every group of picks (e.g. the sensitivity trials) evenly over the
    group's cells.
    """
    groups: list[tuple[list[str], float]] = []
    ids = sorted(it.item_id for it in items)
    if study_type == DECEITFULNESS:
        variant = variants[0]
        groups.append(([f"{it.item_id}|{variant}" for it in items if it.deceives(variant)], n))
    elif study_type == NATURALNESS:
        abl = sorted(ablations)
        pairs = [f"{a}~{b}" for i, a in enumerate(abl) for b in abl[i + 1 :]]
        per_item = (n // 2) / max(len(ids), 1)
        for i in ids:
            groups.append(([f"{i}|{smart}~{a}" for a in abl], per_item))
            groups.append(([f"{i}|{pair}" for pair in pairs], per_item))
    elif study_type == INDISTINGUISHABILITY:
        n_sens, n_ctrl, n_perc = split_counts(n, [sensitivity_share, control_share])
        groups.append(([f"sensitivity|{i}" for i in ids], n_sens))
        groups.append(([f"control|{i}|{c}" for i in ids for c in controls], n_ctrl))
        if procedure == "constant":
            shown = [v for m in variants for v, _ in (levels or {}).get(m, ())]
            for v in shown:
                groups.append(([f"perceivability|{i}|{v}" for i in ids], n_perc / len(shown)))
        else:  # fixed: the variants; adaptive: the methods (the level is the procedure's)
            groups.append(([f"perceivability|{i}|{v}" for i in ids for v in variants], n_perc))
    else:
        raise ValueError(f"cell_rates: unknown study type {study_type!r}")
    rates: dict[str, float] = {}
    for cells, picks in groups:
        for c in cells:
            rates[c] = rates.get(c, 0.0) + picks / len(cells)
    return rates


def condition_of(cell: str) -> str:
    """The condition of a balancing cell: the cell without its motion item (combined sessions: with the block).

    >>> condition_of("item-003|smart~l2"), condition_of("control|item-001|control"), condition_of("b1:item-2|smart")
    ('smart~l2', 'control control', 'block 2: smart')
    """
    block = None
    head = cell.split("|", 1)[0]
    if re.fullmatch(r"b\d+:.*", head):
        prefix, _, cell = cell.partition(":")
        block = int(prefix[1:]) + 1
    parts = cell.split("|")
    if parts[0] in ("sensitivity", "control", "perceivability"):
        name = " ".join([parts[0], *parts[2:]])
    else:
        name = parts[-1]
    return name if block is None else f"block {block}: {name}"
