"""QUEST+ for detection thresholds (stimuli.adaptive): the observer model, the choice, recovery of known observers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stimuli.adaptive import GUESSES
from stimuli.adaptive import LAPSES
from stimuli.adaptive import SIGMAS
from stimuli.adaptive import choose
from stimuli.adaptive import p_changed
from stimuli.adaptive import posterior

LEVELS = (0.2, 0.4, 0.6, 0.8, 1.0)


def _observer(threshold: float, sigma: float, guess: float, lapse: float):
    def p(s: float) -> float:
        if s <= 0:
            return guess
        return guess + (1 - guess - lapse) * 0.5 * (1 + math.erf(math.log(s / threshold) / sigma / math.sqrt(2)))

    return p


def test_the_model_at_known_points() -> None:
    # at the threshold the core is 1/2: P = guess + (1 - guess - lapse) / 2 on every grid point with exp(mu) = s
    p = p_changed(0.5)
    assert p.shape == (41 * len(SIGMAS) * len(GUESSES) * len(LAPSES),)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_array_equal(p_changed(0.0), np.repeat(GUESSES, len(LAPSES))[None, :].repeat(41 * 5, 0).ravel())


def test_no_answers_gives_the_uniform_prior_and_a_deterministic_choice() -> None:
    w = posterior([])
    n = 41 * len(SIGMAS) * len(GUESSES) * len(LAPSES)
    np.testing.assert_allclose(w, 1 / n)
    a, b = choose(LEVELS, []), choose(LEVELS, [])
    assert a == b and a.entropy == pytest.approx(math.log(n))
    assert a.strength in LEVELS and a.answers == 0


def test_the_choice_moves_towards_the_seen_levels() -> None:
    # every answer 'changed' at the weakest level: the threshold estimate falls below it; all 'unchanged' at the
    # strongest level: it rises above it
    low = choose(LEVELS, [(0.2, True)] * 12 + [(0.0, False)] * 6)
    high = choose(LEVELS, [(1.0, False)] * 12 + [(0.0, False)] * 6)
    assert low.threshold < 0.2 < 1.0 < high.threshold


@pytest.mark.parametrize("threshold", [0.3, 0.55, 0.8])
def test_simulated_observers_are_recovered(threshold: float) -> None:
    # 120 adaptive trials and 30 interleaved sensitivity trials per observer, 8 observers: the posterior mean of the
    # threshold lies within 25 % of the truth on average (log scale), and the choices stay near it
    errors = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        obs = _observer(threshold, 0.3, 0.1, 0.02)
        history: list[tuple[float, bool]] = []
        for k in range(150):
            s = 0.0 if k % 5 == 4 else choose(LEVELS, history).strength
            history.append((s, bool(rng.random() < obs(s))))
        errors.append(math.log(choose(LEVELS, history).threshold / threshold))
    assert abs(float(np.mean(errors))) < math.log(1.25)
