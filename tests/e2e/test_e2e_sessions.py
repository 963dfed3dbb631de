"""Whole sessions in real Chromium: each design, a reload and a restart mid-way, a broken video, keyboard only.

Every session is checked in the database afterwards: all answers stored once and
valid, response times measured, playback events logged, and answering enabled only
after the configured plays at the configured rate.
"""

from __future__ import annotations

import os
import time
from typing import Any
from typing import Callable

import pytest
from sqlalchemy import select

from study_server.extensions import db
from study_server.models import Participant
from study_server.models import Response
from study_server.models import Trial

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - CI installs it
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("the playwright package is not installed", allow_module_level=True)

WHERE = """() => {
  if (location.pathname.endsWith('/done')) return document.readyState === 'complete' ? 'done' : null;
  const notice = document.getElementById('notice');
  if (notice && !notice.hidden) return 'notice';
  const b = document.querySelector('#answers button');
  return b && !b.disabled ? 'answer' : null;
}"""


def where(page: Any, timeout: float = 30.0) -> str:
    """Wait until the page is done, shows a notice, or takes an answer; say which."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = page.evaluate(WHERE)
        except PlaywrightError:  # navigating
            state = None
        if state:
            return state
        page.wait_for_timeout(100)
    raise AssertionError(
        f"the page neither finished nor became answerable in {timeout} s; status: "
        f"{page.locator('#status').inner_text()!r}"
    )


def answer_one(page: Any, act: Callable[[Any], None], notice: Callable[[Any], None]) -> str | None:
    """Answer the current trial with ``act`` (passing a notice with ``notice``); its progress label, or None if done."""
    state = where(page)
    while state == "notice":
        notice(page)
        state = where(page)
    if state == "done":
        return None
    label = page.locator("#progress-label").inner_text()
    act(page)
    try:  # saved: the buttons stay disabled until the next trial (or the page leaves)
        page.wait_for_function(
            "() => location.pathname.endsWith('/done') || "
            "[...document.querySelectorAll('#answers button')].every(b => b.disabled)"
        )
    except PlaywrightError:
        pass
    return label


def run(page: Any, act: Callable[[Any], None], notice: Callable[[Any], None]) -> list[str]:
    """Answer every remaining trial; the progress labels seen, in order."""
    seen = []
    for _ in range(30):
        label = answer_one(page, act, notice)
        if label is None:
            return seen
        seen.append(label)
    raise AssertionError("the session did not end")


def click_first(page: Any) -> None:
    page.locator("#answers button").first.click()


def click_continue(page: Any) -> None:
    page.get_by_role("button", name="Continue").click()


def intro_by_mouse(page: Any, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_label("Your age in years").fill("31")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/trials")


def stored(live: Any, recruit_id: str) -> tuple[Participant, list[tuple[Trial, Response]]]:
    """The participant and their (trial, response) pairs, in the order answered."""
    with live.app.app_context():
        p = db.session.execute(select(Participant).where(Participant.recruit_id == recruit_id)).scalar_one()
        rows = db.session.execute(
            select(Trial, Response)
            .join(Response, Response.trial_pk == Trial.id)
            .where(Trial.participant_pk == p.id)
            .order_by(Response.id)
        ).all()
        return p, [(t, r) for t, r in rows]


def check_played(rows: list[tuple[Trial, Response]], plays: int, seconds: float, slowdown: float) -> None:
    for t, r in rows:
        assert r.valid and r.response_time_ms is not None and r.response_time_ms > 0
        types = [e["type"] for e in r.events]
        assert "play" in types and "answer" in types and "failed" not in types
        assert [e["n"] for e in r.events if e["type"] == "play-end"] == list(range(1, plays + 1))
        # answering became possible only after every play, at the slowed-down rate
        answerable = next(e["t"] for e in r.events if e["type"] == "answerable")
        assert answerable >= 0.85 * plays * seconds * slowdown * 1000, (t.position, r.events)


def test_deceitfulness_session_survives_a_reload_and_a_browser_restart(live_server, page, browser):
    entry = f"{live_server.url}/s/dec?PROLIFIC_PID=e2e-dec&STUDY_ID=st&SESSION_ID=se"
    intro_by_mouse(page, entry)
    assert answer_one(page, click_first, click_continue) == "Practice 1 of 1"
    assert answer_one(page, click_first, click_continue) == "Trial 1 of 3"
    expect(page.locator("#progress-label")).to_have_text("Trial 2 of 3")
    labels = page.locator("#answers button").all_inner_texts()
    assert len(labels) == 2 and any("jog" in x for x in labels)  # the true and the attacked class names
    page.reload()  # mid-playback: back at the same trial
    assert answer_one(page, click_first, click_continue) == "Trial 2 of 3"
    # a browser restart: no cookies, the same Prolific link
    context = browser.new_context()
    try:
        again = context.new_page()
        again.goto(entry)
        again.wait_for_url("**/trials")
        assert run(again, click_first, click_continue) == ["Trial 3 of 3"]
        done = again.locator("main").inner_text()
        assert "E2E-DONE" in done and "return to Prolific" in done
    finally:
        context.close()
    p, rows = stored(live_server, "e2e-dec")
    assert p.status == "completed" and len(rows) == 4 and len({t.id for t, _ in rows}) == 4
    check_played(rows, plays=1, seconds=1.0, slowdown=1.0)
    reloaded = [r for t, r in rows if t.position == 2][0]
    assert reloaded.events[-1] == {"type": "server-served", "n": 2}  # the reload showed it twice
    assert page.js_errors == []


def test_naturalness_session_plays_the_synced_pair_twice_and_retries_a_lost_answer(live_server, page):
    intro_by_mouse(page, f"{live_server.url}/s/nat?PROLIFIC_PID=e2e-nat")
    live_server.faults.drop_answers = 1  # the first answer is stored but its response is lost: the page retries
    expect(page.locator("#captions")).to_be_visible()
    width = page.wait_for_function("() => document.querySelector('video:not([hidden])').videoWidth").json_value()
    assert width == 2 * 96 + 4  # one composite video: both clips in one frame-exact stream
    # the participant leaves the tab and comes back during the practice trial: logged once each way
    for hidden in ("true", "false"):
        page.evaluate(
            f"() => {{ Object.defineProperty(document, 'hidden', {{configurable: true, get: () => {hidden}}}); "
            "document.dispatchEvent(new Event('visibilitychange')); }"
        )
    labels = run(page, lambda pg: pg.locator("#answers button").nth(1).click(), click_continue)
    assert labels == ["Practice 1 of 1", "Trial 1 of 4", "Trial 2 of 4", "Trial 3 of 4", "Trial 4 of 4"]
    p, rows = stored(live_server, "e2e-nat")
    assert live_server.faults.dropped == 1
    assert p.status == "completed" and len(rows) == 5 and len({t.id for t, _ in rows}) == 5  # stored once each
    check_played(rows, plays=2, seconds=1.0, slowdown=1.0)
    assert all(r.answer == "right" for _, r in rows)
    assert [e["type"] for e in rows[0][1].events if e["type"] in ("hidden", "visible")] == ["hidden", "visible"]
    assert page.js_errors == []


def tab_to(page: Any, selector: str, limit: int = 20) -> None:
    """Press Tab until the focused element matches ``selector``."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_indistinguishability_session_with_the_keyboard_only(live_server, page):
    page.goto(f"{live_server.url}/s/ind?workerId=e2e-kbd&assignmentId=A1&hitId=H1")
    tab_to(page, "input[name=agree]")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # visible focus
    page.keyboard.press("Enter")
    page.wait_for_url("**/about")
    tab_to(page, "#age")
    page.keyboard.type("45")
    tab_to(page, "#gender")
    page.keyboard.press("ArrowDown")  # first real choice
    tab_to(page, "input[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url("**/instructions")
    tab_to(page, "input[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url("**/trials")
    expect(page.locator("#captions span").first).to_have_text("Original")

    keys = iter(["1", "2", "arrows", "1", "2", "arrows"])

    def by_keys(pg: Any) -> None:
        k = next(keys)
        if k == "arrows":  # with nothing focused, ArrowRight points at the right-hand answer; then move, choose
            focused = "() => document.activeElement.dataset.value || null"
            assert pg.evaluate(focused) is None
            pg.keyboard.press("ArrowRight")
            assert pg.evaluate(focused) == "unchanged"
            pg.keyboard.press("ArrowLeft")
            assert pg.evaluate(focused) == "changed"
            pg.keyboard.press("ArrowRight")
            assert pg.evaluate(focused) == "unchanged"
            pg.keyboard.press("Enter")
        else:
            pg.keyboard.press(k)

    labels = run(page, by_keys, lambda pg: pg.keyboard.press("Enter"))  # the notice's button has the focus
    assert labels == ["Practice 1 of 1"] + [f"Trial {i} of 5" for i in range(1, 6)]
    assert "Submit the HIT" in page.locator("main").inner_text()
    p, rows = stored(live_server, "e2e-kbd")
    assert p.status == "completed" and p.age == 45 and p.demographics == {"gender": "woman"}
    assert [r.answer for _, r in rows] == ["changed", "unchanged", "unchanged", "changed", "unchanged", "unchanged"]
    check_played(rows, plays=1, seconds=1.0, slowdown=1.5)
    assert p.screening["control_trials"] == 1 and p.screening["sensitivity_trials"] == 2
    assert page.js_errors == []


def test_a_broken_video_is_logged_marked_invalid_and_given_again(live_server, page):
    live_server.faults.broken.add((1, 1))  # the second trial's first attempt gets a corrupted file
    intro_by_mouse(page, f"{live_server.url}/s/flaky?PROLIFIC_PID=e2e-flaky")
    labels = run(page, click_first, click_continue)
    assert labels == ["Trial 1 of 3", "Trial 2 of 3", "Trial 3 of 3"]  # the failed one came back, not counted
    assert live_server.faults.served
    p, rows = stored(live_server, "e2e-flaky")
    assert p.status == "completed"
    failed = [(t, r) for t, r in rows if t.position == 1]
    assert [(r.attempt, r.valid, r.playback_failed, r.failure_reason) for _, r in failed] == [
        (1, False, True, "error"),
        (2, True, False, None),
    ]
    assert [t.position for t, _ in rows] == [0, 1, 2, 1]  # given again at the end
    first = failed[0][1]
    assert any(e["type"] == "failed" and e.get("detail") == "error" for e in first.events)
    assert first.response_time_ms is None
    check_played([x for x in rows if x[1].valid], plays=1, seconds=1.0, slowdown=1.0)
    assert page.js_errors == []


def test_practice_feedback_is_shown_after_a_practice_trial_with_a_right_answer(live_server, page):
    intro_by_mouse(page, f"{live_server.url}/s/fb?PROLIFIC_PID=e2e-fb&STUDY_ID=st&SESSION_ID=se")
    said = []

    def unchanged_and_read(pg: Any) -> None:
        pg.locator('#answers button[data-value="unchanged"]').click()
        pg.wait_for_function(
            "() => { const s = document.getElementById('status');"
            " return !s || /^(Right|Not quite|Saved)/.test(s.textContent); }"
        )
        try:
            said.append(pg.evaluate("() => (document.getElementById('status') || {}).textContent || 'done'"))
        except PlaywrightError:  # navigating to the end
            said.append("done")

    labels = run(page, unchanged_and_read, click_continue)
    assert labels == ["Practice 1 of 2", "Practice 2 of 2", "Trial 1 of 1"]
    # a clear change first (answered 'unchanged': wrong), then two identical clips (right); none on the trial
    assert said[:2] == ["Not quite: one of the two clips was changed.", "Right: the two clips were the same."]
    assert len(said) == 3 and not said[2].startswith(("Right", "Not quite"))
    assert page.js_errors == []
