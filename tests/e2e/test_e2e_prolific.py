"""A whole Prolific study in real Chromium, against a local server implementing Prolific's documented API.

The researcher creates the study on Prolific from its dashboard and publishes it; two participants
come from Prolific (its redirect with their ids), one careful, one who calls every pair changed and is
screened out; both are sent back to Prolific with their code; the researcher reviews (the careful one
approved, the screened-out one asked to return with the reason, the study's policy) and pays a bonus.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from support.prolific_api import TOKEN
from support.prolific_api import LocalProlific
from support.server import RESEARCHER
from support.server import make_test_app
from werkzeug.serving import make_server

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - CI installs it
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("the playwright package is not installed", allow_module_level=True)

from test_e2e_sessions import click_continue  # noqa: E402  (the e2e folder is on sys.path)
from test_e2e_sessions import run  # noqa: E402

STUDY = (
    "pro",
    "indistinguishability",
    {
        "trials": 3,
        "practice_trials": 0,
        "sensitivity_share": 0.34,
        "control_share": 0.0,
        "completion_code": "PRO-DONE",
        "target_participants": 2,
    },
)


@pytest.fixture
def prolific_live(tmp_path: Path) -> Any:
    srv = LocalProlific()
    app = make_test_app(
        tmp_path / "pro.sqlite3",
        [STUDY],
        researcher=True,
        config={"PROLIFIC_API_URL": srv.url, "PROLIFIC_TOKEN": TOKEN, "PROLIFIC_APP_URL": srv.url},
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield srv, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        srv.stop()


def flash(page: Any) -> str:
    return page.locator(".flash").first.inner_text()


def post_dashboard(page: Any, button: str) -> str:
    page.get_by_role("button", name=button).click()
    page.wait_for_load_state()
    return flash(page)


def take_part(browser: Any, srv: LocalProlific, study_id: str, pid: str, answer: str) -> str:
    """From Prolific's link to the study and back to Prolific; the code the participant handed back."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(srv.take_url(study_id, pid))
        page.get_by_role("button", name="I agree to take part").click()
        page.get_by_label("Your age in years").fill("29")
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("button", name="Start").click()
        page.wait_for_url("**/trials")
        run(page, lambda pg: pg.locator(f'#answers button[data-value="{answer}"]').click(), click_continue)
        code = page.locator("strong.code").inner_text()
        page.get_by_role("link", name="return to Prolific now").click()
        expect(page.locator("h1")).to_have_text("Submission complete")
        return code
    finally:
        context.close()


def test_a_prolific_study_from_the_dashboard_to_the_bonus(prolific_live, page, browser, tmp_path):
    srv, base = prolific_live
    page.goto(f"{base}/admin/login")
    page.get_by_label("Email").fill(RESEARCHER[0])
    page.get_by_label("Password").fill(RESEARCHER[1])
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{base}/admin/studies/pro")

    form = page.locator("#prolific-form")
    expect(form.get_by_label("This server's public URL")).to_have_value(base)
    expect(form.get_by_label("Places")).to_have_value("2")
    form.get_by_label("Reward per participant").fill("0.10")
    form.get_by_label("Excluded participants").select_option("return")
    assert "below Prolific's minimum" in post_dashboard(page, "Create the study on Prolific (a draft)")
    assert srv.studies == {}
    page.locator("#prolific-form").get_by_label("Reward per participant").fill("1.20")
    assert "Created on Prolific as a draft" in post_dashboard(page, "Create the study on Prolific (a draft)")
    [(sid, study)] = srv.studies.items()
    assert study["external_study_url"].startswith(f"{base}/s/pro?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}")
    assert "ACTIVE" in post_dashboard(page, "Publish on Prolific")

    assert take_part(browser, srv, sid, "pp-careful", "unchanged") == "PRO-DONE"
    screened_code = take_part(browser, srv, sid, "pp-careless", "changed")
    assert screened_code != "PRO-DONE" and screened_code in page.locator("#prolific").evaluate(
        "h => h.nextElementSibling.innerText"
    )
    subs = {s["participant_id"]: s for s in srv.submissions_of(sid)}
    assert {p: s["status"] for p, s in subs.items()} == {
        "pp-careful": "AWAITING REVIEW",
        "pp-careless": "AWAITING REVIEW",
    }

    page.reload()
    text = post_dashboard(page, "Review submissions (approve; exclusions by the policy)")
    assert "approved 1" in text and "asked 1 to return" in text, text
    assert subs["pp-careful"]["status"] == "APPROVED"
    assert subs["pp-careless"]["return_requested"] and "quality check" in subs["pp-careless"]["return_reasons"][0]

    page.get_by_label("Bonus per analysed participant (GBP)").fill("0.40")
    assert "paid 1" in post_dashboard(page, "Pay the bonus")
    assert subs["pp-careful"]["bonus_payments"] == [40] and subs["pp-careless"]["bonus_payments"] == []
    page.get_by_label("Bonus per analysed participant (GBP)").fill("0.40")
    assert "Bonuses: paid 0, 1 paid before" in post_dashboard(page, "Pay the bonus")
    assert srv.pay_calls == {subs["pp-careful"]["id"]: 1}
    expect(page.locator("#prolific-done")).to_contain_text("approved 1, bonus paid 1, asked to return 1")
    page.locator("#prolific").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "dashboard-prolific.png"), full_page=True)
    assert page.js_errors == []
