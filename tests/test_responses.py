"""The response export format shared by the server (writer) and analysis (reader)."""

from __future__ import annotations

import pytest

from stimuli.errors import DataError
from stimuli.responses import COLUMN_NAMES
from stimuli.responses import make_row
from stimuli.responses import read_responses
from stimuli.responses import rows_to_csv
from stimuli.responses import rows_to_json


def _row(**over):
    base = dict(
        participant="p1",
        study="demo",
        study_type="deceitfulness",
        recruit_platform="anonymous",
        participant_completed=True,
        excluded=False,
        block=0,
        trial_index=3,
        practice=False,
        attempt=1,
        valid=True,
        batch_id="b1",
        item_id="item-001",
        true_label="walk",
        attacked_label="run",
        variant="smart",
        plays=1,
        seconds=6.0,
        slowdown=1.0,
        answer="true_label",
        label_order="attacked,true",
        chose_true_label=True,
        response_time_ms=812.5,
        playback_failed=False,
        playback_events=[{"t": 0.0, "type": "play"}],
        age=31,
    )
    base.update(over)
    return make_row(**base)


def test_round_trip_csv_and_json(tmp_path):
    rows = [_row(), _row(participant="p2", chose_true_label=False, answer="attacked_label", age=None)]
    csv_path = tmp_path / "r.csv"
    csv_path.write_text(rows_to_csv(rows))
    json_path = tmp_path / "r.json"
    json_path.write_text(rows_to_json(rows, study="demo"))
    for path in (csv_path, json_path):
        back = read_responses(path)
        assert back == rows
    # CSV encodes booleans as 1/0 and missing values as empty cells
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",")[: len(COLUMN_NAMES)] == list(COLUMN_NAMES)[: len(lines[0].split(","))]
    second = dict(zip(COLUMN_NAMES, next(iter(__import__("csv").reader([lines[2]])))))
    assert second["chose_true_label"] == "0" and second["age"] == ""


def test_bad_rows_are_refused_with_location(tmp_path):
    with pytest.raises(DataError, match="unknown response column"):
        make_row(participant="p", bogus=1)
    with pytest.raises(DataError, match="study_type must be one of"):
        _row(study_type="quiz")
    with pytest.raises(DataError, match="'participant' is required"):
        _row(participant="")
    path = tmp_path / "bad.csv"
    text = rows_to_csv([_row()]).replace(",812.5,", ",fast,")
    path.write_text(text)
    with pytest.raises(DataError, match=r"bad.csv: line 2: column 'response_time_ms': expected float, got 'fast'"):
        read_responses(path)
    path.write_text("participant,study\np,s\n")
    with pytest.raises(DataError, match="line 1: missing column"):
        read_responses(path)
    path.write_text('{"format": "other", "rows": []}')
    with pytest.raises(DataError, match="not a smart-study responses file"):
        read_responses(path)
    path.write_text("")
    with pytest.raises(DataError, match="empty responses file"):
        read_responses(path)
