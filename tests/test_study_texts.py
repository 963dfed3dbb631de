"""What participants read is the study's: its header, its consent text; and the defaults a paid study gets."""

from __future__ import annotations

import re
from html import unescape

import pytest
from support.server import ParticipantActions
from support.server import ResearcherActions
from support.server import make_test_app

from study_server.extensions import db
from study_server.models import Study

CONSENT = (
    "The Movement Lab (Example University) studies walking.\n\nYou can stop at any time.\nContact: lab@example.org"
)
STUDIES = [
    (
        "own",
        "indistinguishability",
        {"trials": 4, "practice_trials": 0, "header": "Movement Lab <study>", "consent_text": CONSENT},
    ),
    ("plain", "deceitfulness", {"trials": 3, "practice_trials": 1}),
    ("paid", "naturalness", {"trials": 2, "practice_trials": 0, "completion_code": "PAID1"}),
    (
        "paid-open",
        "naturalness",
        {"trials": 2, "practice_trials": 0, "completion_code": "PAID2", "allow_anonymous": True},
    ),
]


@pytest.fixture
def app(tmp_path):
    return make_test_app(tmp_path / "texts.sqlite3", STUDIES, researcher=True)


def _text(html: str, tag: str) -> list[str]:
    return [
        unescape(re.sub(r"<[^>]+>|\s+", " ", m)).strip() for m in re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", html, re.S)
    ]


def test_a_study_sets_the_header_title_and_consent_text_participants_read(app) -> None:
    p = ParticipantActions(app.test_client(), "own")
    assert p.enter(PROLIFIC_PID="p1").status_code == 302
    html = p.client.get("/s/own/consent").get_data(as_text=True)
    assert _text(html, "header") == ["Movement Lab <study>"]  # escaped, as written
    assert "&lt;study&gt;" in html and "<study>" not in html
    assert _text(html, "title") == ["Information and consent · Movement Lab <study>"]
    paragraphs = _text(html, "p")
    assert "The Movement Lab (Example University) studies walking." in paragraphs
    assert "You can stop at any time. Contact: lab@example.org" in paragraphs  # one paragraph, its line kept
    assert "There are 4 clips." in paragraphs  # the count is still given
    assert "Taking part is voluntary" not in html  # the standard text is replaced
    assert re.search(r"<p class=\"consent\">You can stop at any time.\nContact", html)


def test_without_its_own_texts_a_study_shows_the_standard_ones(app) -> None:
    p = ParticipantActions(app.test_client(), "plain")
    assert p.enter(PROLIFIC_PID="p2").status_code == 302
    html = p.client.get("/s/plain/consent").get_data(as_text=True)
    assert _text(html, "header") == ["Motion perception study"]
    assert _text(html, "title") == ["Information and consent · Motion perception study"]
    assert "There are 3 clips, after 1 practice clip;" in " ".join(_text(html, "p"))
    assert "Taking part is voluntary" in html


def test_a_study_with_a_code_takes_only_recruited_people_unless_told(app) -> None:
    with app.app_context():
        anon = {s.slug: s.allow_anonymous for s in db.session.query(Study)}
    assert anon == {"own": True, "plain": True, "paid": False, "paid-open": True}
    assert ParticipantActions(app.test_client(), "paid").enter().status_code == 400
    assert ParticipantActions(app.test_client(), "paid").enter(PROLIFIC_PID="p3").status_code == 302
    assert ParticipantActions(app.test_client(), "paid-open").enter().status_code == 302


def test_the_dashboard_names_a_screening_only_where_the_design_has_one(app) -> None:
    ra = ResearcherActions(app.test_client())
    assert ra.login().status_code == 302
    own = ra.client.get("/admin/studies/own").get_data(as_text=True)
    assert "screening 80 % sensitivity accuracy" in own
    for slug in ("plain", "paid"):
        assert "screening" not in ra.client.get(f"/admin/studies/{slug}").get_data(as_text=True).lower()
    # the time of the figures reads as a date and a time, not a raw ISO stamp
    assert re.search(r'data-format="time"[^>]*>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC<', own)
