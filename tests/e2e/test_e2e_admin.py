"""The researcher's side in real Chromium: sign in, import the batch, create a combined study (closed), open
it, watch a participant complete it on the live dashboard, download the export, withdraw the participant, sign
out; then the downloaded export goes through ``analysis report``. And a combined session (three blocks, each
after its own instructions) taken by a participant."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support.batches import server_batch
from support.server import RESEARCHER

from stimuli.responses import read_responses
from study_server.extensions import db
from study_server.models import MediaToken
from study_server.models import Participant
from study_server.models import Study
from study_server.models import Trial
from study_server.studies import cell_counts

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - CI installs it
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("the playwright package is not installed", allow_module_level=True)

from test_e2e_sessions import answer_one  # noqa: E402  (the e2e folder is on sys.path)
from test_e2e_sessions import click_continue  # noqa: E402
from test_e2e_sessions import click_first  # noqa: E402
from test_e2e_sessions import intro_by_mouse  # noqa: E402
from test_e2e_sessions import run  # noqa: E402
from test_e2e_sessions import stored  # noqa: E402

SIDES = ("left_variant", "right_variant")


def flash(page: Any) -> str:
    return page.locator(".flash").first.inner_text()


def click_unchanged(page: Any) -> None:
    page.locator('#answers button[data-value="unchanged"]').click()


def next_block(page: Any, part: int) -> None:
    page.wait_for_url("**/instructions")
    expect(page.locator("h1")).to_have_text(f"Instructions: part {part} of 3")
    page.get_by_role("button", name="Start").click()


def take_the_combined_study(page: Any, url: str) -> None:
    """A careful participant: the first label and the left clip, then 'unchanged' to every pair (which passes
    the sensitivity screen: the original | original pair is judged unchanged)."""
    intro_by_mouse(page, url)  # deceitfulness
    assert [answer_one(page, click_first, click_continue) for _ in range(2)] == ["Trial 1 of 2", "Trial 2 of 2"]
    next_block(page, 2)  # naturalness
    assert [answer_one(page, click_first, click_continue) for _ in range(2)] == ["Trial 1 of 2", "Trial 2 of 2"]
    next_block(page, 3)  # indistinguishability
    assert run(page, click_unchanged, click_continue) == [f"Trial {i} of 3" for i in (1, 2, 3)]
    assert "E2E-ADMIN" in page.locator("main").inner_text()


def test_admin_flows_in_the_browser_and_the_export_in_analysis_report(admin_server, page, browser, tmp_path):
    base = admin_server.url
    # every admin page needs the sign-in
    page.goto(f"{base}/admin/studies/new")
    page.wait_for_url(re.compile(r".*/admin/login\?next=.*"))
    page.get_by_label("Email").fill(RESEARCHER[0])
    page.get_by_label("Password").fill("a-wrong-password")
    page.get_by_role("button", name="Sign in").click()
    assert flash(page) == "Email or password is wrong."
    page.get_by_label("Password").fill(RESEARCHER[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/studies/new")
    assert "Import a stimulus batch" in page.locator("main").inner_text()

    # import the batch (every video decoded), then again: nothing changes
    page.get_by_role("link", name="Batches").click()
    batch = str(server_batch())
    expect(page.locator("main")).to_contain_text(batch)
    page.get_by_label("Batch folder on the server").fill(batch)
    expect(page.get_by_label("Decode every video while checking")).to_be_checked()
    page.locator("#import-form").get_by_role("button", name="Import").click()
    assert flash(page).startswith("Imported batch 'batch-")
    page.get_by_label("Batch folder on the server").fill(batch)
    page.locator("#import-form").get_by_role("button", name="Import").click()
    assert flash(page).endswith("was already imported: nothing changed.")

    # create a combined session, closed: a mistake first, named on its field
    page.get_by_role("link", name="New study", exact=True).click()
    expect(page.get_by_label("Naturalness trials", exact=True)).to_be_hidden()  # other designs' fields hide
    page.get_by_label("Design", exact=True).select_option(label="Combined session: the designs in blocks")
    expect(page.get_by_label("Naturalness trials", exact=True)).to_be_visible()
    page.get_by_label("Study link name").fill("e2e-admin")
    expect(page.get_by_label("Blocks of a combined session")).to_have_value(
        "deceitfulness,naturalness,indistinguishability"
    )
    page.get_by_label("Deceitfulness trials").fill("2")
    page.get_by_label("Naturalness trials", exact=True).fill("2")
    page.get_by_label("Indistinguishability trials").fill("3")
    page.get_by_label("Share of sensitivity trials").fill("0.34")
    page.get_by_label("Share of positive-control trials").fill("0")
    for kind in ("Deceitfulness", "Naturalness", "Indistinguishability"):
        page.get_by_label(f"{kind} practice trials").fill("0")
    page.get_by_label("Target number of analysed participants").fill("2")
    page.get_by_label("Status", exact=True).select_option("closed")
    page.get_by_label("Header participants see").fill("E2E Movement Lab")
    page.get_by_label("Information and consent text").fill("We study walking.\n\nYou may stop at any time.")
    anonymous = page.get_by_label("Allow entry without a Prolific or MTurk id")
    expect(anonymous).to_be_checked()
    page.get_by_label("Completion code").fill("bad code")
    expect(anonymous).not_to_be_checked()  # a study with a code takes recruited people only, unless ticked
    page.screenshot(path=str(tmp_path / "new-study.png"), full_page=True)
    page.get_by_role("button", name="Create the study").click()
    assert flash(page).startswith("The study was not created")
    expect(page.locator("#completion_code-error")).to_contain_text("letters, digits")
    expect(page.get_by_label("Completion code")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Completion code").fill("E2E-ADMIN")
    page.get_by_role("button", name="Create the study").click()
    page.wait_for_url("**/admin/studies/e2e-admin")
    expect(page.locator("main")).to_contain_text(
        "1. deceitfulness (2 trials), 2. naturalness (2 trials), 3. indistinguishability (3 trials)"
    )
    expect(page.locator('[data-live="status"]')).to_have_text("closed")
    expect(page.locator('[data-live="participants.completed"]')).to_have_text("0")

    # closed: participants are turned away; opened from the dashboard, they get in
    entry = f"{base}/s/e2e-admin?PROLIFIC_PID=e2e-admin-p1&STUDY_ID=s&SESSION_ID=x"
    context = browser.new_context()
    try:
        participant = context.new_page()
        participant.goto(entry)
        expect(participant.locator("main")).to_contain_text("This study is not taking new participants")
        participant.goto(f"{base}/s/e2e-admin")
        expect(participant.locator("main")).to_contain_text("missing the id from the recruiting platform")
        participant.goto(entry)
        # a pilot first: recorded and exported, but counted apart and never in balancing or the report
        page.get_by_role("button", name="Run as a pilot").click()
        expect(page.locator('[data-live="status"]')).to_have_text("pilot")
        pilot_context = browser.new_context()
        try:
            take_the_combined_study(pilot_context.new_page(), entry.replace("e2e-admin-p1", "e2e-admin-pilot"))
        finally:
            pilot_context.close()
        pilot, pilot_rows = stored(admin_server, "e2e-admin-pilot")
        assert pilot.pilot and pilot.status == "completed" and len(pilot_rows) == 7
        expect(page.locator('[data-live="participants.pilot"]')).to_have_text("1", timeout=10_000)
        expect(page.locator('[data-live="participants.completed"]')).to_have_text("0")
        with admin_server.app.app_context():
            assert cell_counts(db.session.execute(select(Study).where(Study.slug == "e2e-admin")).scalar_one()) == {}
        page.get_by_role("button", name="Open to new participants").click()
        expect(page.locator('[data-live="status"]')).to_have_text("open")
        expect(page.get_by_role("button", name="Close to new participants")).to_be_visible()
        participant.goto(entry)  # the study's own header and consent text
        expect(participant.locator("header.site")).to_have_text("E2E Movement Lab")
        expect(participant.locator("main")).to_contain_text("You may stop at any time.")
        assert participant.title() == "Information and consent · E2E Movement Lab"
        # the participant takes it in another browser while the dashboard stays open
        take_the_combined_study(participant, entry)
    finally:
        context.close()
    p, rows = stored(admin_server, "e2e-admin-p1")
    assert p.status == "completed" and not p.excluded and len(rows) == 7
    expect(page.locator('[data-live="participants.completed"]')).to_have_text("1", timeout=10_000)  # auto-refresh
    expect(page.locator('[data-live="participants.started"]')).to_have_text("1")
    expect(page.locator('[data-live="participants.analysed"]')).to_have_text("1")
    expect(page.locator("#conditions tbody")).to_contain_text("sensitivity")
    page.reload()  # the charts are drawn as of loading the page
    expect(page.get_by_role("img", name="Completions over time (cumulative)")).to_be_visible()
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # download the export
    with page.expect_download() as info:
        page.get_by_role("link", name="Download responses (CSV)").click()
    csv_path = tmp_path / "e2e-admin.csv"
    info.value.save_as(csv_path)
    back = [r for r in read_responses(csv_path) if not r["pilot"]]
    assert len(back) == 7 and {r["participant"] for r in back} == {p.public_id}
    assert {r["participant"] for r in read_responses(csv_path) if r["pilot"]} == {pilot.public_id}
    assert all(r["study"] == "e2e-admin" and r["participant_completed"] and r["valid"] for r in back)
    assert [r["study_type"] for r in back].count("naturalness") == 2

    # withdraw the participant, after typing the id
    page.get_by_role("link", name="Participants", exact=True).click()
    page.locator("tr", has_text=p.public_id).get_by_role("link", name="Withdraw…").click()
    page.get_by_label("Type the participant id to confirm").fill("not-the-id")
    page.get_by_role("button", name="Delete this participant's data").click()
    expect(page.locator("#confirm-error")).to_contain_text(f"Type {p.public_id} exactly")
    page.get_by_label("Type the participant id to confirm").fill(p.public_id)
    page.get_by_role("button", name="Delete this participant's data").click()
    assert flash(page) == f"Participant {p.public_id} withdrawn: 7 answers and 7 trials deleted."
    page.get_by_role("link", name="e2e-admin").first.click()
    expect(page.locator('[data-live="participants.completed"]')).to_have_text("0")

    # sign out: the pages are closed again
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{base}/admin/")
    page.wait_for_url(re.compile(r".*/admin/login\?next=.*"))
    assert page.js_errors == []

    # the downloaded export reads back into `analysis report`: every perceptual section filled, of the one
    # participant (the pilot is left out: the counts below are one participant's)
    check_report_of_the_export(csv_path, tmp_path / "report")


def _report(csv_path: Path, out: Path, *extra: str) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("analysis")
    r = subprocess.run(
        [
            str(exe),
            "report",
            "--responses",
            str(csv_path),
            "--batch",
            str(server_batch()),
            "--out",
            str(out),
            "--json",
            "--no-glmm",
            "--bootstrap",
            "50",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def check_report_of_the_export(csv_path: Path, out: Path) -> None:
    summary = _report(csv_path, out)
    assert summary["inputs"]["pilot_participants"] == {"found": 1, "analysed": False}
    with_pilot = _report(csv_path, out.with_name("with-pilot"), "--include-pilot")
    assert with_pilot["counts"]["deceitfulness:e2e-admin"]["analysed"] == 2  # asked for: the pilot is in
    one = {"recruited": 1, "started": 1, "completed": 1, "excluded": 0, "analysed": 1}
    assert summary["counts"] == {
        f"{kind}:e2e-admin": one for kind in ("deceitfulness", "naturalness", "indistinguishability")
    }
    assert summary["deceitfulness"]["overall"]["n"] == 2
    ind = summary["indistinguishability"]
    assert ind["overall"]["n"] == 2 and ind["overall"]["share"] == 1.0  # both attacked pairs judged unchanged
    assert ind["screening"]["always_unchanged"] == 1 and ind["screening"]["server_excluded"] == 0
    # the methods the one motion's two trials compared (SMART vs an ablation, then two ablations); with two
    # answers their Bradley-Terry order may be undetermined, so the test checks which methods the fit saw
    rows = [r for r in read_responses(csv_path) if not r["pilot"]]
    shown = {r[side] for r in rows if r["study_type"] == "naturalness" for side in SIDES}
    nat = summary["naturalness"]
    assert set(nat["bt"]) == shown and "smart" in shown and len(shown) >= 3
    assert nat["order_bt"] or "were never compared with each other" in nat["no_order"]
    md = (out / "report.md").read_text()
    for heading in ("Participants and trials", "Deceitfulness", "Naturalness", "Indistinguishability"):
        assert f"## {heading}" in md
    assert "No deceitfulness responses" not in md and "No naturalness responses" not in md
    assert "Attacked clips judged unchanged: 100" in md
    html = (out / "report.html").read_text()
    assert "data:image/svg+xml;base64," in html and "e2e-admin" in html


def test_a_combined_session_in_the_browser(live_server, page):
    intro_by_mouse(page, f"{live_server.url}/s/combo?PROLIFIC_PID=e2e-combo")
    assert [answer_one(page, click_first, click_continue)] == ["Trial 1 of 1"]
    page.wait_for_url("**/instructions")  # block 1 over: the next block's instructions
    expect(page.locator("h1")).to_have_text("Instructions: part 2 of 3")
    assert "more natural" in page.locator("main").inner_text()
    page.get_by_role("button", name="Start").click()
    assert [answer_one(page, click_first, click_continue) for _ in range(2)] == ["Trial 1 of 2", "Trial 2 of 2"]
    page.wait_for_url("**/instructions")
    expect(page.locator("h1")).to_have_text("Instructions: part 3 of 3")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#captions span").first).to_have_text("Original")
    assert run(page, click_first, click_continue) == ["Trial 1 of 2", "Trial 2 of 2"]
    assert "COMBO-DONE" in page.locator("main").inner_text()
    p, rows = stored(live_server, "e2e-combo")
    assert p.status == "completed" and [(t.block, t.design) for t, _ in rows] == [
        (0, "deceitfulness"),
        (1, "naturalness"),
        (1, "naturalness"),
        (2, "indistinguishability"),
        (2, "indistinguishability"),
    ]
    assert all(r.valid for _, r in rows) and len({t.id for t, _ in rows}) == 5
    assert page.js_errors == []


def test_a_researcher_previews_each_design_and_nothing_is_recorded(live_server, page, tmp_path):
    base = live_server.url
    page.goto(f"{base}/admin/login")
    page.get_by_label("Email").fill(RESEARCHER[0])
    page.get_by_label("Password").fill(RESEARCHER[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/")
    for slug, kind, answers in (
        ("dec", "deceitfulness", 2),
        ("nat", "naturalness", 3),
        ("ind", "indistinguishability", 2),
    ):
        page.goto(f"{base}/admin/studies/{slug}")
        page.get_by_role("link", name="Preview as a participant").click()
        overlay = page.get_by_role("complementary", name="For the researcher only")
        expect(overlay).to_contain_text("Preview: nothing is recorded.")
        expect(overlay).to_contain_text(f"1 of 1: {kind}")
        assert page.locator(".answers a").count() == answers
        video = page.locator("#preview-video")
        video.evaluate("v => v.play()")
        page.wait_for_function("() => document.getElementById('preview-video').currentTime > 0.2")
        page.screenshot(path=str(tmp_path / f"preview-{slug}.png"), full_page=True)
        # jump to the last trial: its condition is named, and answering in the preview moves on
        options = page.locator("#trial option")
        last = options.count() - 1
        page.locator("#trial").select_option(str(last))
        page.get_by_role("button", name="Go").click()
        expect(page.locator("#condition dd").first).to_have_text(re.compile(rf"^{last + 1} of {last + 1}\b"))
        label = options.nth(last).inner_text().split(": ", 1)[1]
        expect(page.locator("#condition")).to_contain_text(label)
        page.goto(f"{base}/admin/studies/{slug}/preview?trial=0")
        page.locator(".answers a").first.click()
        expect(page.locator("#condition dd").first).to_have_text(re.compile(rf"^2 of {last + 1}\b"))
    with live_server.app.app_context():
        assert db.session.query(Participant).count() == 0
        assert db.session.query(Trial).count() == 0 and db.session.query(MediaToken).count() == 0
    assert page.js_errors == []
