"""Study server, researcher side (Flask test client): accounts, sign-in and its rate limit, every /admin route
behind the sign-in, batch import, study set-up with field-level errors, the dashboard's figures, export,
withdrawal, and the CLI commands that do the same from a shell."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select
from support.batches import server_batch
from support.server import RESEARCHER
from support.server import ParticipantActions
from support.server import ResearcherActions
from support.server import csrf_token
from support.server import make_test_app

from stimuli.responses import COLUMN_NAMES
from stimuli.responses import read_responses
from study_server.admin import PUBLIC
from study_server.export import export_csv
from study_server.export import response_rows
from study_server.extensions import db
from study_server.models import Attempt
from study_server.models import AuditEvent
from study_server.models import Batch
from study_server.models import LoginAttempt
from study_server.models import MediaToken
from study_server.models import Participant
from study_server.models import Researcher
from study_server.models import Response
from study_server.models import Study
from study_server.models import Trial
from study_server.studies import cell_counts

STUDIES = [
    (
        "ind",
        "indistinguishability",
        {
            "trials": 5,
            "practice_trials": 0,
            "sensitivity_share": 0.4,
            "control_share": 0.2,
            "target_participants": 10,
            "completion_code": "DONE",
        },
    ),
    ("dec", "deceitfulness", {"trials": 3, "practice_trials": 0}),
]


@pytest.fixture
def app(tmp_path):
    return make_test_app(
        tmp_path / "admin.sqlite3", STUDIES, researcher=True, config={"BATCH_ROOTS": [str(tmp_path / "batches")]}
    )


@pytest.fixture
def admin(app):
    ra = ResearcherActions(app.test_client())
    assert ra.login().status_code == 302
    return ra


def flashes(html: str) -> list[str]:
    return [
        unescape(re.sub(r"\s+", " ", m).strip())
        for m in re.findall(r'<p class="flash[^"]*"[^>]*>(.*?)</p>', html, re.S)
    ]


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def unchanged(trial, state):
    return "unchanged"


def by_key(trial, state):
    """An attentive participant: 'changed' exactly when the right clip is not the original."""
    if trial.design == "indistinguishability":
        return "changed" if trial.kind != "sensitivity" else "unchanged"
    return state["options"][0]["value"]


# ---- accounts and sign-in ---------------------------------------------------------------------------
def test_create_researcher_command_hashes_and_is_scriptable(tmp_path):
    app = make_test_app(tmp_path / "r.sqlite3", with_batch=False)
    runner = app.test_cli_runner()
    r = runner.invoke(args=["create-researcher", "Ada@Example.org", "--password", "a-long-password", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"email": "ada@example.org", "created": True}
    with app.app_context():
        row = db.session.execute(select(Researcher)).scalar_one()
        assert "a-long-password" not in row.password_hash and row.password_hash.startswith("scrypt:")
    again = runner.invoke(args=["create-researcher", "ada@example.org", "--password", "another-password"])
    assert again.exit_code == 1 and "exists already" in again.output and "Traceback" not in again.output
    short = runner.invoke(args=["create-researcher", "bob@example.org", "--password", "short"])
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    bad = runner.invoke(args=["create-researcher", "not-an-email", "--password", "a-long-password"])
    assert bad.exit_code == 1 and "not an email address" in bad.output
    prompted = runner.invoke(args=["create-researcher", "cy@example.org"], input="typed-password\ntyped-password\n")
    assert prompted.exit_code == 0 and "created researcher cy@example.org" in prompted.output
    generated = runner.invoke(args=["create-researcher", "di@example.org", "--generate", "--json"])
    password = json.loads(generated.output)["password"]
    ra = ResearcherActions(app.test_client(), "di@example.org", password)
    assert ra.login().status_code == 302
    reset = runner.invoke(args=["create-researcher", "di@example.org", "--password", "brand-new-password", "--reset"])
    assert reset.exit_code == 0 and "new password set" in reset.output
    assert ra.client.get("/admin/").status_code == 302  # a new password signs old sessions out


def test_every_admin_route_requires_sign_in(app):
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("admin.") and r.endpoint not in PUBLIC]
    assert len(rules) >= 10
    values = {"slug": "ind", "pid": "p-0", "fmt": "csv", "stimulus_pk": 1, "kind": "mp4", "verb": "review"}
    anonymous = app.test_client()
    token = csrf_token(anonymous.get("/admin/login").get_data(as_text=True))
    checked = 0
    for rule in rules:
        path = rule.build(values, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            r = anonymous.open(path, method=method, data={"csrf_token": token} if method == "POST" else None)
            if method == "GET" and not path.endswith(".json"):
                assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login?next="), path
            else:
                assert r.status_code == 401, (method, path, r.status_code)
            body = r.get_data(as_text=True)
            assert "batch-" not in body and "sensitivity" not in body and "DONE" not in body  # nothing leaks
            checked += 1
    assert checked >= len(rules)
    assert anonymous.get("/admin/login").status_code == 200


def test_sign_in_goes_on_to_next_only_within_admin_and_sign_out_ends_it(app):
    ra = ResearcherActions(app.test_client())
    wrong = ra.login(password="not-the-password")
    assert wrong.status_code == 401 and "Email or password is wrong." in flashes(wrong.get_data(as_text=True))
    unknown = ra.login(email="nobody@example.org")
    assert unknown.status_code == 401 and "Email or password is wrong." in flashes(unknown.get_data(as_text=True))
    r = ra.login(next="/admin/studies/ind")
    assert r.status_code == 302 and r.headers["Location"] == "/admin/studies/ind"
    assert ra.client.get("/admin/studies/ind").status_code == 200
    ra.logout()
    assert ra.client.get("/admin/").status_code == 302
    for evil in ("https://evil.example/", "//evil.example/admin", "/s/ind"):
        r = ra.login(next=evil)
        assert r.headers["Location"] == "/admin/", evil
    with app.app_context():
        assert db.session.execute(select(Researcher)).scalar_one().last_login_at is not None
    page = ra.client.get("/admin/")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_sign_in_is_rate_limited_per_account_and_per_address(tmp_path):
    app = make_test_app(
        tmp_path / "rl.sqlite3",
        researcher=True,
        config={"LOGIN_MAX_FAILURES_PER_ACCOUNT": 3, "LOGIN_MAX_FAILURES_PER_IP": 5},
    )
    with app.app_context():
        from study_server.accounts import create_researcher

        create_researcher("other@example.org", "other-password")
    ra = ResearcherActions(app.test_client())
    for _ in range(3):
        assert ra.login(password="wrong-password").status_code == 401
    locked = ra.login()  # the right password, but the account is locked
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins for this account: 3 in the last 15 minutes. Try again in 15 minutes." in flashes(
        locked.get_data(as_text=True)
    )
    assert ra.client.get("/admin/").status_code == 302  # not signed in
    # the same address, another account: two more failures reach the address's limit of 5
    other = ResearcherActions(app.test_client(), "other@example.org", "other-password")
    for _ in range(2):
        assert other.login(password="wrong-password").status_code == 401
    blocked = other.login()
    assert blocked.status_code == 429 and "from your address" in blocked.get_data(as_text=True)
    # from another address the other account signs in
    elsewhere = ResearcherActions(app.test_client(), "other@example.org", "other-password")
    elsewhere.client.environ_base["REMOTE_ADDR"] = "10.9.8.7"
    assert elsewhere.login().status_code == 302
    # once the window has passed, the first account signs in again
    with app.app_context():
        for row in db.session.execute(select(LoginAttempt)).scalars():
            row.at = row.at.replace(year=row.at.year - 1)
        db.session.commit()
    assert ra.login().status_code == 302


# ---- batches ----------------------------------------------------------------------------------------
def copy_batch(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / "batches" / name
    shutil.copytree(server_batch(), dst)
    return dst


def test_import_a_batch_from_the_form_once_idempotently_and_refuse_a_broken_one(tmp_path):
    app = make_test_app(
        tmp_path / "imp.sqlite3", with_batch=False, researcher=True, config={"BATCH_ROOTS": [str(tmp_path / "batches")]}
    )
    ra = ResearcherActions(app.test_client())
    ra.login()
    good = copy_batch(tmp_path, "good")
    page = ra.client.get("/admin/batches").get_data(as_text=True)
    assert str(good) in page  # found under the allowed folder, with an import button
    r = ra.post("/admin/batches", {"path": str(good)})  # (the browser test decodes every video)
    assert r.status_code == 302
    html = ra.client.get("/admin/batches").get_data(as_text=True)
    assert any(m.startswith("Imported batch 'batch-") and "3 motions" in m for m in flashes(html))
    n_stimuli = count(app, Batch), count(app, Trial)
    r = ra.post("/admin/batches", {"path": str(good)})
    assert (
        "was already imported: nothing changed." in flashes(ra.client.get("/admin/batches").get_data(as_text=True))[0]
    )
    assert (count(app, Batch), count(app, Trial)) == n_stimuli
    # a batch whose video no longer matches its manifest: refused, nothing written
    broken = copy_batch(tmp_path, "broken")
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["batch_id"] = "batch-altered"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    video = sorted(broken.rglob("*.mp4"))[0]
    data = bytearray(video.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 10] = bytes(b ^ 0xFF for b in data[len(data) // 2 : len(data) // 2 + 10])
    video.write_bytes(bytes(data))
    r = ra.post("/admin/batches", {"path": str(broken)})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "is not a valid stimulus batch" in flashes(html)[0]
    assert "SHA-256 mismatch" in html and video.name in html  # the problem, named
    assert count(app, Batch) == 1
    outside = ra.post("/admin/batches", {"path": str(server_batch())})
    assert outside.status_code == 400 and "outside the folders" in outside.get_data(as_text=True)
    missing = ra.post("/admin/batches", {"path": str(tmp_path / "batches" / "nothing")})
    assert missing.status_code == 400 and "no such folder" in missing.get_data(as_text=True)
    with app.app_context():
        assert [e.action for e in db.session.execute(select(AuditEvent)).scalars()] == ["import-batch"]


def test_import_batch_command_reports_and_refuses(tmp_path):
    app = make_test_app(tmp_path / "cli.sqlite3", with_batch=False)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["import-batch", str(server_batch()), "--no-decode", "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    assert data["created"] is True and data["items"] == 3 and data["stimuli"] > 3 * 5
    again = runner.invoke(args=["import-batch", str(server_batch()), "--no-decode"])
    assert again.exit_code == 0 and "already imported: nothing changed" in again.output
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = runner.invoke(args=["import-batch", str(empty)])
    assert bad.exit_code == 1 and "not imported" in bad.output and "Traceback" not in bad.output


# ---- creating studies -------------------------------------------------------------------------------
def test_create_a_study_from_the_form(admin, app):
    form = admin.study_form(
        slug="pilot",
        title="Pilot",
        study_type="indistinguishability",
        indistinguishability_trials="10",
        indistinguishability_slowdown="2",
        indistinguishability_sensitivity_share="0.3",
        indistinguishability_control_share="0.2",
        indistinguishability_practice_trials="1",
        target_participants="40",
        completion_code="C0DE",
        prolific_redirect=False,
        control_hit_threshold="0.5",
        status="closed",
    )
    r = admin.post("/admin/studies/new", form)
    assert r.status_code == 302 and r.headers["Location"] == "/admin/studies/pilot"
    with app.app_context():
        s = db.session.execute(select(Study).where(Study.slug == "pilot")).scalar_one()
        assert s.title == "Pilot" and s.study_type == "indistinguishability"
        assert s.blocks == [
            {
                "study_type": "indistinguishability",
                "trials": 10,
                "practice_trials": 1,
                "plays": 1,
                "seconds": 1.0,
                "slowdown": 2.0,
                "variants": ["smart"],
                "sensitivity_share": 0.3,
                "control_share": 0.2,
                "procedure": "fixed",
                "practice_feedback": False,
            }
        ]
        assert (s.target_participants, s.completion_code, s.prolific_redirect, s.status) == (
            40,
            "C0DE",
            False,
            "closed",
        )
        assert s.control_hit_threshold == 0.5 and s.screening_threshold == 0.8
    assert "Study 'pilot' created" in flashes(admin.client.get("/admin/studies/pilot").get_data(as_text=True))[0]
    # closed: a new participant is turned away politely
    assert app.test_client().get("/s/pilot?PROLIFIC_PID=late").status_code == 410


def field_error(html: str, field: str) -> str:
    m = re.search(rf'<p class="error" id="{field}-error">(.*?)</p>', html)
    assert m is not None, f"no error on {field}"
    return unescape(m.group(1))


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"slug": "Not A Slug"}, "slug", "Slug must be lower-case letters"),
        ({"slug": "ind"}, "slug", "A study with slug 'ind' exists already"),
        ({"indistinguishability_trials": "0"}, "indistinguishability_trials", "must be a whole number from 1"),
        ({"indistinguishability_trials": "many"}, "indistinguishability_trials", "Not a valid integer value"),
        ({"study_type": "naturalness", "naturalness_trials": "5"}, "naturalness_trials", "must be even"),
        ({"indistinguishability_variants": "original"}, "indistinguishability_variants", "not an attacked variant"),
        (
            {"indistinguishability_sensitivity_share": "0.6", "indistinguishability_control_share": "0.5"},
            "indistinguishability_sensitivity_share",
            "leave no perceivability trial",
        ),
        (
            {"indistinguishability_sensitivity_share": "1.5"},
            "indistinguishability_sensitivity_share",
            "Indistinguishability share of sensitivity trials must be a number from 0 to 1.",
        ),
        ({"completion_code": "has space"}, "completion_code", "Completion_code must be letters"),
        ({"indistinguishability_seconds": "5"}, "indistinguishability_seconds", "at most the batch's clip length 1"),
        ({"max_attempts": "11"}, "max_attempts", "Attempts per trial when videos fail must be a whole number from 1"),
        ({"study_type": "combined", "order": "deceitfulness,memory"}, "order", "unknown: memory"),
        (
            {"study_type": "combined", "naturalness_trials": "3"},
            "naturalness_trials",
            "Block 2 (naturalness): naturalness trials must be even",
        ),
    ],
)
def test_the_study_form_names_the_field_at_fault(admin, app, change, field, message):
    r = admin.post("/admin/studies/new", admin.study_form(**{"slug": "bad", **change}))
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert message in field_error(html, field)
    assert flashes(html)[0].startswith("The study was not created")
    assert count(app, Study) == len(STUDIES)


def test_create_a_combined_session_from_the_form(admin, app):
    form = admin.study_form(
        slug="session",
        study_type="combined",
        order="naturalness,indistinguishability",
        naturalness_trials="2",
        indistinguishability_trials="3",
        naturalness_practice_trials="0",
        indistinguishability_practice_trials="1",
        indistinguishability_sensitivity_share="0.34",
        indistinguishability_control_share="0",
    )
    r = admin.post("/admin/studies/new", form)
    assert r.status_code == 302, flashes(r.get_data(as_text=True))
    with app.app_context():
        s = db.session.execute(select(Study).where(Study.slug == "session")).scalar_one()
        assert [(b["study_type"], b["trials"], b["plays"], b["practice_trials"]) for b in s.blocks] == [
            ("naturalness", 2, 2, 0),
            ("indistinguishability", 3, 1, 1),
        ]
        assert s.study_type == "combined" and (s.trials, s.practice_trials) == (5, 1)
    page = admin.client.get("/admin/studies/session").get_data(as_text=True)
    assert "1. naturalness (2 trials), 2. indistinguishability (3 trials)" in page


# ---- dashboard, status -------------------------------------------------------------------------------
def test_dashboard_figures_follow_the_participants(admin, app):
    ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="good").finish(by_key)
    ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="lazy").finish(unchanged)  # excluded? no:
    sloppy = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="sloppy")
    sloppy.finish(lambda t, s: "changed")  # says changed to the sensitivity trials: excluded
    halfway = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="halfway")
    s = halfway.state()
    assert halfway.answer(s, None, failed=True, reason="stalled").status_code == 200
    decliner = ParticipantActions(app.test_client(), "ind")
    decliner.enter(PROLIFIC_PID="no")
    decliner.consent(agree=False)
    data = admin.client.get("/admin/studies/ind/live.json").get_json()
    assert data["participants"] == {
        "entered": 5,
        "declined": 1,
        "started": 3,  # halfway's one answer was a playback failure: in the trials, but not started
        "in_progress": 1,
        "completed": 3,
        "excluded": 1,
        "analysed": 2,
        "pilot": 0,
    }
    # the dashboard and the report count the same people from the same answers
    from analysis.perceptual import counts
    from analysis.readers import rows_to_frame

    with app.app_context():
        report = counts(rows_to_frame(response_rows(db.session.query(Study).filter_by(slug="ind").one()))).summary
    shown = {k: data["participants"][k] for k in ("started", "completed", "excluded", "analysed")}
    assert {k: report["indistinguishability:ind"][k] for k in shown} == shown
    assert data["exclusions"] == [{"reason": "sensitivity accuracy 0.00 < 0.80", "participants": 1}]
    assert data["playback"] == {"failures": 1, "participants": 1, "trials_given_up": 0, "reasons": {"stalled": 1}}
    assert data["median_duration_s"] is not None and data["median_duration_s"] >= 0
    conditions = {c["condition"]: c for c in data["conditions"]}
    # 5 trials: 2 sensitivity, 1 control, 2 perceivability; two analysed participants so far; target 10
    assert conditions["sensitivity"]["trials"] == 4 and conditions["sensitivity"]["target"] == 20.0
    assert conditions["control control"]["trials"] == 2 and conditions["control control"]["target"] == 10.0
    assert conditions["perceivability smart"]["cells"] == 3 and conditions["perceivability smart"]["trials"] == 4
    assert sum(c["trials"] for c in data["conditions"]) == sum(cell_counts_of(app, "ind").values())
    page = admin.client.get("/admin/studies/ind").get_data(as_text=True)
    assert 'data-live="participants.completed">3<' in page and "sensitivity accuracy 0.00 &lt; 0.80" in page
    runner = app.test_cli_runner()
    r = runner.invoke(args=["summary", "ind", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["participants"] == data["participants"]
    text = runner.invoke(args=["summary", "ind"]).output
    assert "completed 3, excluded 1, analysed 2 of 10" in text


def cell_counts_of(app, slug):
    with app.app_context():
        return cell_counts(db.session.execute(select(Study).where(Study.slug == slug)).scalar_one())


def test_open_and_close_a_study(admin, app):
    r = admin.post("/admin/studies/dec/status", {"status": "closed"})
    assert r.status_code == 302
    assert app.test_client().get("/s/dec?PROLIFIC_PID=new").status_code == 410
    admin.post("/admin/studies/dec/status", {"status": "open"})
    assert app.test_client().get("/s/dec?PROLIFIC_PID=new").status_code == 302
    assert app.test_cli_runner().invoke(args=["set-status", "dec", "closed"]).output.strip() == "dec: closed"
    with app.app_context():
        assert [e.detail["status"] for e in db.session.execute(select(AuditEvent)).scalars()] == [
            "closed",
            "open",
            "closed",
        ]


# ---- export ------------------------------------------------------------------------------------------
def test_export_downloads_and_the_cli_agree(admin, app, tmp_path):
    ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="e1").finish(by_key)
    ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="e2").finish(by_key)
    csv_r = admin.client.get("/admin/studies/ind/export.csv")
    assert csv_r.status_code == 200 and csv_r.mimetype == "text/csv"
    assert csv_r.headers["Content-Disposition"] == 'attachment; filename="ind-responses.csv"'
    (tmp_path / "dl.csv").write_bytes(csv_r.get_data())
    json_r = admin.client.get("/admin/studies/ind/export.json")
    (tmp_path / "dl.json").write_bytes(json_r.get_data())
    from_csv, from_json = read_responses(tmp_path / "dl.csv"), read_responses(tmp_path / "dl.json")
    assert len(from_csv) == 5 and from_csv == from_json
    assert list(from_csv[0]) == list(COLUMN_NAMES)
    assert {r["study_type"] for r in from_csv} == {"indistinguishability"}
    assert admin.client.get("/admin/studies/ind/export.xlsx").status_code == 404
    runner = app.test_cli_runner()
    out = tmp_path / "cli.json"
    r = runner.invoke(args=["export", "ind", "--out", str(out), "--json"])
    assert json.loads(r.output) == {"studies": ["ind"], "format": "json", "out": str(out), "rows": 5, "participants": 1}
    assert read_responses(out) == from_json
    stdout = runner.invoke(args=["export", "dec", "--format", "csv"]).output
    assert stdout.splitlines()[0] == ",".join(COLUMN_NAMES) and len(stdout.splitlines()) == 4
    assert runner.invoke(args=["export", "nope"]).output.startswith("Error: no study 'nope' (studies: dec, ind)")
    with app.app_context():
        study = db.session.execute(select(Study).where(Study.slug == "ind")).scalar_one()
        assert export_csv(study) == csv_r.get_data(as_text=True)
        expected = response_rows(study)
    assert read_responses(out) == expected
    # no slug: every study, in slug order, on standard output
    every = tmp_path / "all.csv"
    every.write_text(runner.invoke(args=["export"]).output)
    rows = read_responses(every)
    assert [r["study"] for r in rows] == ["dec"] * 3 + ["ind"] * 5 and all(
        r["chose_true_label"] is not None for r in rows[:3]
    )


# ---- withdrawal --------------------------------------------------------------------------------------
def mine(app, model, public_id) -> int:
    with app.app_context():
        p = db.session.execute(select(Participant.id).where(Participant.public_id == public_id)).scalar()
        return (
            -1
            if p is None
            else db.session.execute(
                select(func.count()).select_from(model).where(model.participant_pk == p)
            ).scalar_one()
        )


def test_withdraw_from_the_dashboard_after_confirmation(admin, app):
    keep = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="keep")
    keep.finish(by_key)
    gone = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="gone-5f1a")
    gone.finish(by_key)
    pid = gone.participant().public_id
    assert (
        cell_counts_of(app, "ind")["sensitivity|item-000"]
        + cell_counts_of(app, "ind").get("sensitivity|item-001", 0)
        + cell_counts_of(app, "ind").get("sensitivity|item-002", 0)
        == 4
    )
    listing = admin.client.get("/admin/studies/ind/participants?q=gone-5f1a").get_data(as_text=True)
    assert pid in listing and keep.participant().public_id not in listing
    url = f"/admin/studies/ind/participants/{pid}/withdraw"
    page = admin.client.get(url).get_data(as_text=True)
    assert "permanently deletes" in page and "5 stored answers" in page
    wrong = admin.post(url, {"confirm": "yes"})
    assert wrong.status_code == 400 and f"Type {pid} exactly to confirm." in wrong.get_data(as_text=True)
    assert mine(app, Response, pid) == 5
    r = admin.post(url, {"confirm": pid})
    assert r.status_code == 302
    assert flashes(admin.client.get(r.headers["Location"]).get_data(as_text=True))[0] == (
        f"Participant {pid} withdrawn: 5 answers and 5 trials deleted."
    )
    assert mine(app, Participant, pid) == -1
    kept = keep.participant().public_id
    with app.app_context():
        assert db.session.execute(select(Participant.public_id)).scalars().all() == [kept]
        left = db.session.execute(select(Participant.id)).scalar_one()
        for model in (Trial, Attempt, MediaToken, Response):
            assert (
                db.session.execute(
                    select(func.count()).select_from(model).where(model.participant_pk != left)
                ).scalar_one()
                == 0
            )
        event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "withdraw")).scalar_one()
        assert event.actor == RESEARCHER[0] and event.detail["participant"] == pid
        assert event.detail["responses"] == 5 and "gone-5f1a" not in json.dumps(event.detail)
    assert sum(cell_counts_of(app, "ind").values()) == 5  # balance counts follow at once
    assert admin.client.get(url).status_code == 404


def test_withdraw_command(app):
    pa = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="cli-w")
    pa.finish(by_key)
    runner = app.test_cli_runner()
    r = runner.invoke(args=["withdraw", "dec", "cli-w"], input="n\n")
    assert r.exit_code == 1 and "Aborted" in r.output and count(app, Participant) == 1
    r = runner.invoke(args=["withdraw", "dec", "cli-w", "--yes", "--json"])
    assert r.exit_code == 0, r.output
    done = json.loads(r.output)
    assert (done["responses"], done["trials"], done["study"]) == (3, 3, "dec")
    assert count(app, Participant) == 0 and count(app, Response) == 0
    assert runner.invoke(args=["withdraw", "dec", "cli-w", "--yes"]).exit_code == 1


# ---- the rest -----------------------------------------------------------------------------------------
def test_healthz_is_bare(app):
    r = app.test_client().get("/healthz")
    assert r.status_code == 200 and r.get_data() == b"ok\n" and "Set-Cookie" not in r.headers


def test_overview_and_log_pages(admin, app):
    ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="o1").finish(by_key)
    page = admin.client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/studies/ind"' in page and "batch-" in page
    admin.client.get("/admin/studies/ind/export.csv")
    log = admin.client.get("/admin/log").get_data(as_text=True)
    assert "export" in log and RESEARCHER[0] in log


def test_init_demo_creates_the_demo_researcher(tmp_path, monkeypatch):
    from study_server import create_app

    monkeypatch.setenv("STUDY_ENV", "development")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    app = create_app()
    r = app.test_cli_runner().invoke(args=["init-demo", "--batch", str(server_batch()), "--no-decode", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output.splitlines()[-1])
    assert info["participant_url"] == "http://127.0.0.1:5000/s/demo"
    assert info["admin_url"] == "http://127.0.0.1:5000/admin/"
    assert info["researcher"] == {"email": "demo@example.org", "password": "demo-password", "created": True}
    ra = ResearcherActions(app.test_client(), "demo@example.org", "demo-password")
    assert ra.login().status_code == 302
    text = app.test_cli_runner().invoke(args=["init-demo", "--batch", str(server_batch()), "--no-decode"]).output
    assert "Admin URL: http://127.0.0.1:5000/admin/" in text and "demo@example.org / demo-password" in text
