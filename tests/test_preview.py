"""A researcher's preview: every trial of a participant's sequence, with its condition; nothing is written."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

from support.server import ResearcherActions
from support.server import make_test_app

from study_server import design
from study_server.extensions import db
from study_server.models import Attempt
from study_server.models import MediaToken
from study_server.models import Participant
from study_server.models import Stimulus
from study_server.models import Study
from study_server.models import Trial
from study_server.studies import plan

STUDIES = [
    (
        "ind",
        "indistinguishability",
        {"trials": 5, "practice_trials": 1, "sensitivity_share": 0.4, "control_share": 0.2},
    ),
    ("dec", "deceitfulness", {"trials": 3, "practice_trials": 0}),
]


def _rows() -> tuple[int, ...]:
    return tuple(db.session.query(m).count() for m in (Participant, Trial, Attempt, MediaToken))


def test_the_preview_shows_each_planned_trial_and_writes_nothing(tmp_path: Path) -> None:
    app = make_test_app(tmp_path / "p.sqlite3", STUDIES, researcher=True)
    anonymous = app.test_client()
    assert anonymous.get("/admin/studies/ind/preview").status_code == 302  # researchers only
    ra = ResearcherActions(app.test_client())
    assert ra.login().status_code == 302
    with app.app_context():
        study = db.session.query(Study).filter_by(slug="ind").one()
        planned = plan(study, 7, {})
        before = _rows()
    assert len(planned) == 6  # 1 practice + 5
    for i, pl in enumerate(planned):
        html = ra.client.get(f"/admin/studies/ind/preview?seed=7&trial={i}").get_data(as_text=True)
        dl = re.search(r'<dl id="condition">(.*?)</dl>', html, re.S)[1]
        shown = " ".join(unescape(re.sub(r"<[^>]+>", " ", dl)).split())
        assert f"Trial {i + 1} of 6" in shown
        assert f"Kind {pl.spec.kind} " in shown and pl.spec.item_id in shown
        assert f"left {pl.spec.left_variant} | right {pl.spec.right_variant}" in shown
        assert ("(practice)" in shown) == pl.spec.practice
        condition = "practice" if pl.spec.practice else design.condition_of(pl.spec.cell)
        assert f"Condition {condition} Kind" in shown
    with app.app_context():
        assert _rows() == before == (0, 0, 0, 0)  # no participant, trial, attempt or media token
        stim = db.session.query(Stimulus).filter_by(item_id=planned[0].spec.item_id, key=planned[0].spec.stimulus).one()
        video = (Path(study.batch.root) / stim.video_path).read_bytes()
        pk = stim.id
    with ra.client.get(f"/admin/studies/ind/preview/media/{pk}.mp4") as r:
        assert r.status_code == 200 and r.mimetype == "video/mp4" and r.data == video
    with ra.client.get(f"/admin/studies/ind/preview/media/{pk}.mp4", headers={"Range": "bytes=0-99"}) as part:
        assert part.status_code == 206 and part.data == video[:100]
    assert ra.client.get(f"/admin/studies/ind/preview/media/{pk}.exe").status_code == 404
    assert ra.client.get("/admin/studies/ind/preview/media/999999.mp4").status_code == 404
    assert anonymous.get(f"/admin/studies/ind/preview/media/{pk}.mp4").status_code == 302
    # out of range: the nearest trial; the deceitfulness labels are the study's two options
    html = ra.client.get("/admin/studies/dec/preview?trial=99").get_data(as_text=True)
    assert "Trial</dt><dd>3 of 3" in html and html.count('<a class="button" href="?seed=1&amp;trial=2">') == 2
