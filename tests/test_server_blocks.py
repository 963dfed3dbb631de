"""Study server, combined sessions: the three designs in blocks, run in order, each with its own instructions
(Flask test client)."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from sqlalchemy import select
from support.server import ParticipantActions
from support.server import make_test_app

from stimuli.responses import read_responses
from stimuli.responses import rows_to_csv
from study_server.export import response_rows
from study_server.extensions import db
from study_server.models import Batch
from study_server.models import Study
from study_server.models import Trial
from study_server.studies import StudyConfigError
from study_server.studies import create_study

BLOCKS = [
    {"study_type": "deceitfulness", "trials": 2, "practice_trials": 1},
    {"study_type": "naturalness", "trials": 2},
    {
        "study_type": "indistinguishability",
        "trials": 5,
        "sensitivity_share": 0.4,
        "control_share": 0.2,
        "slowdown": 2.0,
    },
]
STUDIES = [("all", "combined", {"blocks": BLOCKS, "practice_trials": 0, "completion_code": "ALL-DONE"})]


@pytest.fixture
def app(tmp_path):
    return make_test_app(tmp_path / "blocks.sqlite3", STUDIES)


def answer_block(pa: ParticipantActions, choose) -> list[Trial]:
    """Answer until the block ends; the trials answered."""
    seen = []
    while True:
        s = pa.state()
        if s["status"] != "trial":
            return seen
        t = pa.trial(s)
        seen.append(t)
        assert pa.answer(s, choose(t, s)).status_code == 200


def attentive(trial, state):
    if trial.design == "indistinguishability":
        return "unchanged" if trial.kind == "sensitivity" else "changed"
    return state["options"][0]["value"]


def test_a_combined_session_runs_its_blocks_in_order_each_after_its_instructions(app):
    pa = ParticipantActions(app.test_client(), "all")
    pa.enter(PROLIFIC_PID="blocks")
    consent = pa.client.get("/s/all/consent").get_data(as_text=True)
    assert "There are\n9 clips, after 1 practice\nclip" in consent  # the whole session
    pa.consent()
    pa.about()
    first = pa.client.get("/s/all/instructions").get_data(as_text=True)
    assert "Instructions: part 1 of 3" in first and "with two labels below it" in first
    pa.start()
    block0 = answer_block(pa, attentive)
    assert [(t.design, t.practice, t.block) for t in block0] == [("deceitfulness", True, 0)] + [
        ("deceitfulness", False, 0)
    ] * 2
    s = pa.state()
    assert s == {"status": "redirect", "url": "/s/all/instructions"}
    assert pa.participant().status == "instructions"
    assert pa.client.get("/s/all/trials").headers["Location"] == "/s/all/instructions"
    second = pa.client.get("/s/all/instructions").get_data(as_text=True)
    assert "part 2 of 3" in second and "Part 1 is done" in second and "more natural" in second
    assert "practice" not in second.split("<form")[0].lower()  # this block has none
    pa.start()
    assert pa.state()["progress"] == {"practice_done": 0, "practice_total": 0, "done": 0, "total": 2}
    block1 = answer_block(pa, attentive)
    assert [(t.design, t.block, t.plays) for t in block1] == [("naturalness", 1, 2)] * 2
    third = pa.client.get("/s/all/instructions").get_data(as_text=True)
    assert "part 3 of 3" in third and "2 times slower" in third
    pa.start()
    block2 = answer_block(pa, attentive)
    assert Counter(t.kind for t in block2) == {"sensitivity": 2, "control": 1, "perceivability": 2}
    assert all(t.slowdown == 2.0 and t.block == 2 for t in block2)
    p = pa.participant()
    assert p.status == "completed" and not p.excluded
    assert p.screening["sensitivity_trials"] == 2 and p.screening["control_hits"] == 1  # the indist. block only
    done = pa.client.get("/s/all/done").get_data(as_text=True)
    assert "ALL-DONE" in done


def test_combined_session_export_has_a_block_and_study_type_per_row(app, tmp_path):
    pa = ParticipantActions(app.test_client(), "all")
    pa.join(PROLIFIC_PID="export")
    for _ in range(3):
        answer_block(pa, attentive)
        if pa.participant().status == "completed":
            break
        pa.start()
    with app.app_context():
        rows = response_rows(db.session.execute(select(Study).where(Study.slug == "all")).scalar_one())
    (tmp_path / "r.csv").write_text(rows_to_csv(rows))
    back = read_responses(tmp_path / "r.csv")
    assert Counter((r["block"], r["study_type"]) for r in back) == {
        (0, "deceitfulness"): 3,
        (1, "naturalness"): 2,
        (2, "indistinguishability"): 5,
    }
    assert all(r["study"] == "all" and r["participant_completed"] for r in back)
    assert all(r["chose_true_label"] is not None for r in back if r["study_type"] == "deceitfulness")


def test_a_failed_video_is_given_again_within_its_own_block(app):
    pa = ParticipantActions(app.test_client(), "all")
    pa.join(PROLIFIC_PID="flaky")
    s = pa.state()
    assert pa.answer(s, None, failed=True).status_code == 200  # the practice trial: not given again
    s = pa.state()
    failed = pa.trial(s)
    assert pa.answer(s, None, failed=True).json["retry"] is True
    order = [t.id for t in answer_block(pa, attentive)]
    assert order[-1] == failed.id and len(order) == 2  # given again last in block 0, before block 1
    assert pa.participant().status == "instructions"


def test_combined_session_settings_are_checked_per_block(app):
    with app.app_context():
        batch = db.session.execute(select(Batch)).scalar_one()
        bad = [
            (
                [{"study_type": "naturalness", "trials": 3}],
                "block 1 (naturalness): naturalness trials must be even",
                "trials",
                0,
            ),
            (
                [{"study_type": "deceitfulness"}, {"study_type": "memory"}],
                "block 2 (memory): study_type must be",
                "study_type",
                1,
            ),
            ([{"study_type": "deceitfulness", "colour": "red"}], "block 1: unknown setting", "blocks", 0),
            ([], "needs at least one block", "blocks", None),
        ]
        for blocks, message, field, block in bad:
            with pytest.raises(StudyConfigError, match=re.escape(message)) as e:
                create_study("x", batch, "combined", blocks=blocks)
            assert (e.value.field, e.value.block) == (field, block)
        with pytest.raises(StudyConfigError, match="blocks are for combined sessions only"):
            create_study("x", batch, "deceitfulness", blocks=BLOCKS)
        s = create_study(
            "paper",
            batch,
            "combined",
            blocks=[{"study_type": t} for t in ("deceitfulness", "naturalness", "indistinguishability")],
        )
        assert [(b["trials"], b["plays"]) for b in s.blocks] == [(100, 1), (100, 2), (100, 1)]  # the paper's
        assert s.trials == 300
