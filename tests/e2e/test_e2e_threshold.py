"""An adaptive threshold session in real Chromium: QUEST+ chooses each trial's level on the server when the
trial comes up, a reload mid-way changes nothing, and every stored choice is the one the answers before it give."""

from __future__ import annotations

import os
from typing import Any

import pytest
from sqlalchemy import select

from stimuli.adaptive import choose
from study_server.export import response_rows
from study_server.extensions import db
from study_server.models import Study

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - CI installs it
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("the playwright package is not installed", allow_module_level=True)

from test_e2e_sessions import answer_one
from test_e2e_sessions import click_continue
from test_e2e_sessions import intro_by_mouse
from test_e2e_sessions import run
from test_e2e_sessions import stored

LEVELS = [0.25, 0.5, 0.75, 1.0]
SUFFIX = {0.25: "-s25", 0.5: "-s50", 0.75: "-s75", 1.0: ""}


def test_an_adaptive_session_chooses_each_level_from_the_answers_before_it(threshold_server, page):
    intro_by_mouse(page, f"{threshold_server.url}/s/thr?PROLIFIC_PID=e2e-thr")
    pattern = iter(["changed", "unchanged", "unchanged", "changed", "changed", "unchanged"] * 3)

    def by_pattern(pg: Any) -> None:
        pg.locator(f'#answers button[data-value="{next(pattern)}"]').click()

    labels = [answer_one(page, by_pattern, click_continue) for _ in range(5)]
    assert labels == ["Practice 1 of 1"] + [f"Trial {i} of 10" for i in range(1, 5)]
    expect(page.locator("#progress-label")).to_have_text("Trial 5 of 10")
    page.reload()  # mid-trial: the same trial, its level already chosen, comes back
    labels = run(page, by_pattern, click_continue)
    assert labels == [f"Trial {i} of 10" for i in range(5, 11)]
    p, rows = stored(threshold_server, "e2e-thr")
    assert p.status == "completed" and len(rows) == 11 and len({t.id for t, _ in rows}) == 11
    assert page.js_errors == []

    with threshold_server.app.app_context():
        study = db.session.execute(select(Study).where(Study.slug == "thr")).scalar_one()
        export = [r for r in response_rows(study) if not r["practice"]]
    export.sort(key=lambda r: r["answered_at"])
    assert [r["trial_kind"] for r in export].count("perceivability") == 7
    history: dict[str, list[tuple[float, bool]]] = {"smart": [], "l2": []}
    for r in export:
        if r["trial_kind"] == "sensitivity":
            for h in history.values():
                h.append((0.0, r["said_changed"]))
        elif r["trial_kind"] == "perceivability":
            m = r["method"]
            assert r["procedure"] == "adaptive" and r["adaptive_state"]["procedure"] == "quest+"
            assert r["strength"] == choose(LEVELS, history[m]).strength  # recomputed independently
            assert r["adaptive_state"]["answers"] == len(history[m])
            assert r["right_variant"] == m + SUFFIX[r["strength"]]  # the clip shown is the chosen level's
            history[m].append((r["strength"], r["said_changed"]))
    assert sum(len(h) for h in history.values()) == 7 + 2 * 2  # every graded answer, and both identical pairs each
