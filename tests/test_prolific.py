"""Prolific through its API: the real client against a local server implementing the documented endpoints.

A whole study (create, publish, participants take part through Prolific's redirect, review by the
exclusion policy, bonuses), each step rerun to show nothing is done twice, and every kind of failure
(refused, answer lost, server down) leaving a state a rerun finishes.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select
from support.prolific_api import TOKEN
from support.prolific_api import LocalProlific
from support.server import ParticipantActions
from support.server import make_test_app

from study_server.extensions import db
from study_server.models import AuditEvent
from study_server.models import ProlificAction
from study_server.models import ProlificLink

CODE = "C0DE-123"
STUDIES = [
    (
        "ind",
        "indistinguishability",
        {
            "trials": 5,
            "practice_trials": 1,
            "sensitivity_share": 0.4,
            "control_share": 0.2,
            "completion_code": CODE,
            "target_participants": 3,
        },
    ),
    ("nocode", "deceitfulness", {"trials": 2, "target_participants": 3}),
]


@pytest.fixture
def srv():
    s = LocalProlific(lose_s=1.2)
    yield s
    s.stop()


def _app(tmp_path, srv, **config):
    cfg = {
        "PROLIFIC_API_URL": srv.url,
        "PROLIFIC_TOKEN": TOKEN,
        "PROLIFIC_APP_URL": srv.url,
        "PROLIFIC_TIMEOUT_S": 0.5,
        **config,
    }
    return make_test_app(tmp_path / "study.sqlite3", STUDIES, config=cfg)


@pytest.fixture
def app(tmp_path, srv):
    return _app(tmp_path, srv)


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["prolific", *args])


def create(app, *extra, reward="1.50", minutes="10"):
    return cli(
        app,
        "create",
        "ind",
        "--server-url",
        "https://study.example.org",
        "--reward",
        reward,
        "--minutes",
        minutes,
        *extra,
    )


def good(t, s):
    return "changed" if t.kind != "sensitivity" else "unchanged"


def bad(t, s):
    return "changed"  # every identical pair called changed: excluded by the screening


def take_part(app, srv, study_id, pid, answer=good):
    """A participant takes the study through Prolific: Prolific's redirect in, the study, the code handed back."""
    r = requests.get(srv.take_url(study_id, pid), allow_redirects=False, timeout=5)
    assert r.status_code == 302
    to = urlsplit(r.headers["Location"])
    assert (to.scheme, to.netloc, to.path) == ("https", "study.example.org", "/s/ind")
    pa = ParticipantActions(app.test_client(), "ind").join(**dict(parse_qsl(to.query)))
    pa.finish(answer)
    page = pa.client.get("/s/ind/done").get_data(as_text=True)
    back = html.unescape(re.search(r'href="([^"]*/submissions/complete\?cc=[^"]+)"', page).group(1))
    assert back.startswith(srv.url)
    assert requests.get(back, cookies={"pid": pid}, timeout=5).status_code == 200
    return pa


def actions(app):
    with app.app_context():
        return {(a.participant_id, a.kind): a.state for a in db.session.execute(select(ProlificAction)).scalars()}


def audit_actions(app):
    with app.app_context():
        return [e.action for e in db.session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]


def test_a_whole_study_on_prolific_and_every_step_rerun(app, srv):
    r = create(app)
    assert r.exit_code == 0, r.output
    [(sid, study)] = srv.studies.items()
    assert study["status"] == "UNPUBLISHED" and study["name"] and study["description"]
    assert study["external_study_url"] == (
        "https://study.example.org/s/ind?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}"
        "&SESSION_ID={{%SESSION_ID%}}"
    )
    assert (study["reward"], study["estimated_completion_time"], study["total_available_places"]) == (150, 10, 3)
    assert study["prolific_id_option"] == "url_parameters"
    codes = {c["code_type"]: c for c in study["completion_codes"]}
    assert codes["COMPLETED"]["code"] == CODE and codes["COMPLETED"]["actions"] == [{"action": "MANUALLY_REVIEW"}]
    screened_code = codes["OTHER"]["code"]
    assert screened_code != CODE and sid in r.output and screened_code in r.output
    assert create(app).exit_code == 0 and len(srv.studies) == 1  # rerun: the same study, nothing sent

    assert cli(app, "publish", "ind").output.strip() == "ind: ACTIVE on Prolific"
    assert cli(app, "publish", "ind").exit_code == 0  # already active: nothing sent (a second PUBLISH is a 400)

    for pid in ("p-good-1", "p-good-2"):
        take_part(app, srv, sid, pid)
    take_part(app, srv, sid, "p-screened", bad)
    by_pid = {s["participant_id"]: s for s in srv.submissions_of(sid)}
    assert by_pid["p-good-1"]["study_code"] == CODE and by_pid["p-screened"]["study_code"] == screened_code
    # someone who typed a code in by hand, with no participant here: left for the researcher
    srv.submissions["stray"] = {
        "id": "stray",
        "participant_id": "p-stray",
        "study_id": sid,
        "status": "AWAITING REVIEW",
        "study_code": CODE,
        "bonus_payments": [],
    }

    r = cli(app, "review", "ind", "--json")
    assert r.exit_code == 0, r.output
    got = __import__("json").loads(r.output)
    assert (got["approved"], got["flagged"], got["returned"], got["earlier"], got["left"]) == (3, 1, 0, 0, ["stray"])
    assert {p: s["status"] for p, s in by_pid.items()} == dict.fromkeys(by_pid, "APPROVED")
    assert srv.submissions["stray"]["status"] == "AWAITING REVIEW"
    again = __import__("json").loads(cli(app, "review", "ind", "--json").output)
    assert (again["approved"], again["earlier"]) == (0, 3)
    assert all(n == 1 for n in srv.approve_calls.values()) and "stray" not in srv.approve_calls

    r = cli(app, "bonus", "ind", "--amount", "0.50")
    assert r.exit_code == 0 and "paid 2 bonuses" in r.output, r.output
    paid = {s["participant_id"]: s["bonus_payments"] for s in srv.submissions_of(sid)}
    assert paid == {"p-good-1": [50], "p-good-2": [50], "p-screened": [], "p-stray": []}
    r = cli(app, "bonus", "ind", "--amount", "0.50")
    assert "paid 0 bonuses, 2 paid before" in r.output and all(n == 1 for n in srv.pay_calls.values())

    assert cli(app, "pause", "ind").output.strip() == "ind: PAUSED on Prolific"
    assert cli(app, "resume", "ind").output.strip() == "ind: ACTIVE on Prolific"
    log = audit_actions(app)
    assert log.count("prolific-create") == 1 and log.count("prolific-publish") == 1
    assert log.count("prolific-approve") == 3 and log.count("prolific-bonus-paid") == 1
    assert "prolific-pause" in log and "prolific-resume" in log
    status = cli(app, "status", "ind").output
    assert "approve 3" in status and "bonus 2" in status


def test_excluded_participants_are_asked_to_return_with_the_reason_under_that_policy(app, srv):
    assert create(app, "--exclusions", "return").exit_code == 0
    [sid] = srv.studies
    assert cli(app, "publish", "ind").exit_code == 0
    take_part(app, srv, sid, "p-good")
    pa = take_part(app, srv, sid, "p-screened", bad)
    reason = pa.participant().exclusion_reason
    r = cli(app, "review", "ind")
    assert r.exit_code == 0 and "approved 1" in r.output and "asked 1 to return" in r.output, r.output
    sub = next(s for s in srv.submissions_of(sid) if s["participant_id"] == "p-screened")
    assert sub["return_requested"] and reason in sub["return_reasons"][0]
    assert sub["status"] == "AWAITING REVIEW"  # until the participant returns it
    assert "asked 0 to return, 2 done before" in cli(app, "review", "ind").output
    assert srv.return_calls == {sub["id"]: 1}
    assert actions(app)[("p-screened", "return")] == "done"


def test_a_reward_below_the_minimum_hourly_rate_is_refused_before_anything_is_sent(app, srv):
    r = create(app, reward="0.50", minutes="10")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.strip() == (
        "Error: reward 0.50 GBP for 10 min is 3.00 GBP/h, below Prolific's minimum of 6.00 GBP/h: "
        "offer at least 1.00 GBP"
    )
    r = create(app, "--currency", "USD", reward="1.00", minutes="10")  # 6 USD/h < 8
    assert "below Prolific's minimum of 8.00 USD/h: offer at least 1.34 USD" in r.output
    assert srv.studies == {}
    with app.app_context():
        assert db.session.execute(select(ProlificLink)).first() is None
    assert (
        "has no completion code"
        in cli(app, "create", "nocode", "--server-url", "https://x.org", "--reward", "2").output
    )
    assert create(app, reward="1.5x").output.strip() == "Error: reward '1.5x' is not an amount (e.g. 1.50)"


def test_creating_again_after_a_lost_answer_finds_the_study_instead_of_making_a_second(app, srv):
    srv.fail("POST", "/api/v1/studies/", "lose")
    r = create(app)
    assert r.exit_code == 1 and "could not reach Prolific" in r.output and "Traceback" not in r.output
    assert len(srv.studies) == 1  # Prolific made it; the answer was lost
    r = create(app)
    assert r.exit_code == 0, r.output
    [sid] = srv.studies
    with app.app_context():
        link = db.session.execute(select(ProlificLink)).scalar_one()
        assert link.prolific_id == sid
        event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "prolific-create")).scalar_one()
        assert event.detail["found_after_lost_answer"] is True


def test_a_server_that_cannot_be_reached_is_one_line_and_a_rerun_finishes(app, srv):
    srv.stop()
    r = create(app)
    assert r.exit_code == 1 and r.output.startswith("Error: could not reach Prolific at http://127.0.0.1:")
    assert len(r.output.strip().splitlines()) == 1
    srv.start()
    assert create(app).exit_code == 0 and len(srv.studies) == 1


def test_a_review_cut_short_says_what_was_done_and_a_rerun_does_the_rest_once(app, srv):
    assert create(app).exit_code == 0
    [sid] = srv.studies
    cli(app, "publish", "ind")
    for k in range(4):
        take_part(app, srv, sid, f"p{k}")
    third = srv.submissions_of(sid)[2]["id"]
    srv.fail("POST", f"/submissions/{third}/transition/", "refuse")
    r = cli(app, "review", "ind")
    assert r.exit_code == 1 and "HTTP 503" in r.output and "Traceback" not in r.output
    assert "before that: approved 2" in r.output and "run the review again" in r.output
    assert sum(s["status"] == "APPROVED" for s in srv.submissions_of(sid)) == 2
    r = cli(app, "review", "ind")
    assert r.exit_code == 0 and "approved 2 " in r.output and "2 done before" in r.output, r.output
    assert all(s["status"] == "APPROVED" for s in srv.submissions_of(sid))
    assert sorted(srv.approve_calls.values()) == [1, 1, 1, 1]  # the refused call did nothing


@pytest.mark.parametrize("mode", ["lose", "refuse"])
def test_a_bonus_payment_whose_answer_fails_is_never_paid_twice(app, srv, mode):
    assert create(app).exit_code == 0
    [sid] = srv.studies
    cli(app, "publish", "ind")
    for k in range(2):
        take_part(app, srv, sid, f"p{k}")
    cli(app, "review", "ind")
    srv.fail("POST", "/pay/", mode)
    r = cli(app, "bonus", "ind", "--amount", "0.25")
    assert r.exit_code == 1 and "Traceback" not in r.output
    if mode == "lose":  # paid on Prolific, answer lost: the rerun checks and pays nothing
        assert "may have gone through" in r.output
        assert set(actions(app).values()) >= {"unknown"}
        r = cli(app, "bonus", "ind", "--amount", "0.25")
        assert "paid 0 bonuses" in r.output and "2 confirmed as paid" in r.output, r.output
    else:  # refused: set up, not paid; the rerun pays it
        assert "set up, not paid" in r.output
        r = cli(app, "bonus", "ind", "--amount", "0.25")
        assert "paid 2 bonuses" in r.output, r.output
    assert [s["bonus_payments"] for s in srv.submissions_of(sid)] == [[25], [25]]
    assert srv.pay_calls and set(srv.pay_calls.values()) == {1}
    assert len(srv.bulks) == 1


def test_a_bad_token_or_none_is_a_clear_error(tmp_path, srv):
    app = _app(tmp_path, srv, PROLIFIC_TOKEN="wrong")
    r = create(app)
    assert r.output.strip() == "Error: Prolific refused POST studies/ (HTTP 401): Invalid token."
    app = _app(tmp_path, srv, PROLIFIC_TOKEN="")
    assert "PROLIFIC_TOKEN is not set" in create(app).output


def test_publishing_needs_the_study_open_here_and_a_study_on_prolific(app, srv):
    assert "is not on Prolific yet" in cli(app, "publish", "ind").output
    assert create(app).exit_code == 0
    app.test_cli_runner().invoke(args=["set-status", "ind", "closed"])
    r = cli(app, "publish", "ind")
    assert r.exit_code == 1 and "is closed here: open it before you publish it" in r.output
    [study] = srv.studies.values()
    assert study["status"] == "UNPUBLISHED"


def test_the_estimated_time_comes_from_the_design_or_the_pilots(app, srv):
    from support.server import make_test_app  # noqa: F401 - the app fixture already built it

    from study_server.prolific import estimated_minutes

    with app.app_context():
        from study_server.models import Study

        study = db.session.execute(select(Study).where(Study.slug == "ind")).scalar_one()
        clip = sum(s.duration for s in study.batch.stimuli) / len(study.batch.stimuli)
        b = study.blocks[0]
        expected = -(-(180 + 6 * (clip * b["plays"] * b["slowdown"] + 6)) // 60)
        assert estimated_minutes(study) == expected
