"""QUEST+ (Watson 2017) for yes/no detection of an attack: which strength to show next.

The observer model is the one ``analysis thresholds`` fits (torch-free, numpy only):

    P("changed" | s) = guess + (1 - guess - lapse) * Phi((ln s - mu) / sigma)

for an attack at strength ``s`` in (0, 1] (the blend ``q + s (q^ - q)``), and
``P("changed") = guess`` for two identical clips (a sensitivity trial, ``s = 0``): in a
yes/no task the guess rate is the false-alarm rate, so the sensitivity trials, interleaved
with the adaptive ones, inform it.

The parameters live on a fixed grid (:data:`MU_SPAN`, :data:`SIGMAS`, :data:`GUESSES`,
:data:`LAPSES`) with a uniform prior. After each answer the posterior is the prior times
the likelihood of every answer so far; the next strength is the candidate whose answer is
expected to leave the posterior with the least entropy (ties: the weaker strength). The
procedure keeps no state of its own: the posterior is rebuilt from the stored answers, so
a session that stops and resumes (or a second server process) chooses exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from math import erf
from math import sqrt
from typing import Sequence

import numpy as np

__all__ = ["MU_SPAN", "SIGMAS", "GUESSES", "LAPSES", "Choice", "p_changed", "posterior", "choose"]

MU_SPAN = (0.02, 4.0)
"""The threshold ``exp(mu)`` ranges over these strengths (log-spaced, 41 points): beyond the levels on both sides,
so an observer who sees every level, or none, is still described."""
SIGMAS = (0.15, 0.3, 0.5, 0.8, 1.2)
"""Spreads of the cumulative normal in log strength."""
GUESSES = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5)
"""Guess (false-alarm) rates."""
LAPSES = (0.0, 0.02, 0.05)
"""Lapse rates."""

_phi = np.vectorize(lambda z: 0.5 * (1.0 + erf(z / sqrt(2.0))))


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    mu = np.linspace(np.log(MU_SPAN[0]), np.log(MU_SPAN[1]), 41)
    m, s, g, la = np.meshgrid(mu, SIGMAS, GUESSES, LAPSES, indexing="ij")
    return m.ravel(), s.ravel(), g.ravel(), la.ravel()


_MU, _SIGMA, _GUESS, _LAPSE = _grid()


@functools.lru_cache(maxsize=256)
def _p(strength: float) -> np.ndarray:
    if strength <= 0:
        p = _GUESS.copy()
    else:
        p = _GUESS + (1.0 - _GUESS - _LAPSE) * _phi((np.log(strength) - _MU) / _SIGMA)
    p.setflags(write=False)
    return p


def p_changed(strength: float) -> np.ndarray:
    """P("changed") at ``strength`` for every grid point (``strength`` 0: identical clips, the guess rate)."""
    return _p(float(strength))


def posterior(history: Sequence[tuple[float, bool]]) -> np.ndarray:
    """The normalised posterior over the grid after ``history``: (strength, said changed) per answer."""
    log = np.zeros_like(_MU)
    for s, yes in history:
        p = np.clip(p_changed(s), 1e-9, 1 - 1e-9)
        log += np.log(p if yes else 1.0 - p)
    w = np.exp(log - log.max())
    return w / w.sum()


def _entropy(w: np.ndarray) -> float:
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


@dataclass(frozen=True)
class Choice:
    """The next strength and the state it was chosen in (stored with the trial)."""

    index: int
    strength: float
    answers: int
    """Answers the posterior was built from (adaptive and sensitivity trials)."""
    threshold: float
    """Posterior mean of the 50 % point of the detection core, ``exp(mu)``."""
    entropy: float
    expected_entropy: tuple[float, ...]
    """Per candidate strength: the posterior entropy expected after its answer."""

    def to_dict(self) -> dict[str, object]:
        return {
            "procedure": "quest+",
            "strength": self.strength,
            "answers": self.answers,
            "threshold": round(self.threshold, 6),
            "entropy": round(self.entropy, 6),
            "expected_entropy": [round(e, 6) for e in self.expected_entropy],
        }


def choose(strengths: Sequence[float], history: Sequence[tuple[float, bool]]) -> Choice:
    """The QUEST+ choice among ``strengths`` (ascending) after ``history`` (see the module docstring)."""
    if not strengths:
        raise ValueError("QUEST+: no strengths to choose from")
    w = posterior(history)
    expected = []
    for s in strengths:
        p = p_changed(float(s))
        yes = float((w * p).sum())
        post_yes = w * p / max(yes, 1e-300)
        post_no = w * (1 - p) / max(1 - yes, 1e-300)
        expected.append(yes * _entropy(post_yes) + (1 - yes) * _entropy(post_no))
    best = int(np.argmin(np.round(expected, 12)))
    return Choice(
        best,
        float(strengths[best]),
        len(history),
        float((w * np.exp(_MU)).sum()),
        _entropy(w),
        tuple(float(e) for e in expected),
    )
