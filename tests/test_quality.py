"""Data-quality flags per participant: too-fast answers, one side or label position, leaving the page."""

from __future__ import annotations

from pathlib import Path

from support.server import ParticipantActions
from support.server import ResearcherActions
from support.server import make_test_app

from study_server.dashboard import quality_flags
from study_server.extensions import db
from study_server.models import Study

STUDIES = [("dec", "deceitfulness", {"trials": 6, "practice_trials": 1})]


def _take(app, pid: str, choose, rt_ms: float = 900.0, hide_on: int | None = None) -> str:
    p = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID=pid)
    n = 0
    while (s := p.state())["status"] == "trial":
        hidden = [{"type": "hidden", "t": 5.0, "mt": 0.1}, {"type": "visible", "t": 900.0, "mt": 0.1}]
        extra = hidden if n == hide_on else []
        assert p.answer(s, choose(n, s), rt_ms=rt_ms, extra_events=extra).status_code == 200
        n += 1
    assert n == 7
    return p.participant().public_id


def test_flags_name_what_to_look_at_and_leave_careful_participants_alone(tmp_path: Path) -> None:
    app = make_test_app(tmp_path / "q.sqlite3", STUDIES, researcher=True)
    # the order of the two labels is balanced, so "the first label every time" is one label position,
    # and alternating positions is not
    careful = _take(app, "careful", lambda n, s: s["options"][n % 2]["value"])
    first = _take(app, "first", lambda n, s: s["options"][0]["value"])
    fast = _take(app, "fast", lambda n, s: s["options"][n % 2]["value"], rt_ms=120.0)
    away = _take(app, "away", lambda n, s: s["options"][n % 2]["value"], hide_on=3)
    practice_away = _take(app, "practice-away", lambda n, s: s["options"][n % 2]["value"], hide_on=0)
    with app.app_context():
        flags = quality_flags(db.session.query(Study).filter_by(slug="dec").one())
    assert careful not in flags and practice_away not in flags  # practice trials are not judged
    assert flags[first] == ["one label position: 1 on 6 of 6 deceitfulness trials"]
    assert flags[fast] == ["too fast: 6 of 6 answers under 250 ms"]
    assert flags[away] == ["left the page 1 time during trials"]
    ra = ResearcherActions(app.test_client())
    assert ra.login().status_code == 302
    page = ra.client.get("/admin/studies/dec/participants").get_data(as_text=True)
    assert '<span class="flag">too fast: 6 of 6 answers under 250 ms</span>' in page
    assert "3 participants flagged" in ra.client.get("/admin/studies/dec").get_data(as_text=True)


def test_the_dashboard_draws_its_charts_from_its_figures(tmp_path: Path) -> None:
    import re

    app = make_test_app(tmp_path / "c.sqlite3", STUDIES, researcher=True)
    for pid in ("a", "b", "c"):
        _take(app, pid, lambda n, s: s["options"][n % 2]["value"])
    ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="d")  # in progress
    ra = ResearcherActions(app.test_client())
    assert ra.login().status_code == 302
    page = ra.client.get("/admin/studies/dec").get_data(as_text=True)
    svgs = re.findall(r'<svg class="chart" role="img" aria-label="([^"]+)"(.*?)</svg>', page, re.S)
    assert [label for label, _ in svgs] == [
        "Completions over time (cumulative)",
        "Participants by outcome",
        "Analysed trials per condition, against the target",
    ]
    completions, outcome, conditions = (body for _, body in svgs)
    assert completions.count(" L") == 2 * 3 and ">3</text>" in completions  # three steps up to 3
    labels = re.findall(r'class="label">([^<]+)</text><rect[^>]*width="([\d.]+)"', outcome)
    values = re.findall(r'class="value">([^<]+)</text>', outcome)
    assert [name for name, _ in labels] == ["Analysed", "In progress", "Declined consent"]
    assert values == ["3", "1", "0"] and float(labels[2][1]) == 0.0
    assert abs(float(labels[0][1]) - 3 * float(labels[1][1])) < 0.5  # bars to scale (widths to 0.1)
    trials = sum(int(v) for v in re.findall(r'class="value">([^<]+)</text>', conditions))
    assert trials == 3 * 6  # every analysed trial of the three, in one condition or another
