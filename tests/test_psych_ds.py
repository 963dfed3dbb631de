"""The responses as a Psych-DS dataset, checked against the standard's rules (written out here from the
Psych-DS specification, independently of the exporter): dataset_description.json with @context, @type,
name, description and variableMeasured; data files under data/ named keyword-value pairs and _data.csv;
every column of every data file described."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from support.server import ParticipantActions
from support.server import make_test_app

from stimuli.responses import read_responses

STUDIES = [
    ("ind-a", "indistinguishability", {"trials": 3, "practice_trials": 0, "sensitivity_share": 0.34}),
    ("dec", "deceitfulness", {"trials": 2, "practice_trials": 1}),
]
DATAFILE = re.compile(r"^([a-z]+-[a-zA-Z0-9]+)(_[a-z]+-[a-zA-Z0-9]+)*_data\.csv$")


def check_psych_ds(root: Path) -> list[str]:
    """The rule broken by the dataset at ``root``, each as one line (none: valid)."""
    problems = []
    meta_path = root / "dataset_description.json"
    if not meta_path.is_file():
        return ["no dataset_description.json at the root"]
    meta = json.loads(meta_path.read_text())
    if meta.get("@context") not in ("https://schema.org/", "https://schema.org", "http://schema.org/"):
        problems.append("@context must be schema.org")
    if meta.get("@type") != "Dataset":
        problems.append("@type must be Dataset")
    for key in ("name", "description"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            problems.append(f"{key} must be a non-empty text")
    measured = meta.get("variableMeasured")
    names = {v if isinstance(v, str) else v.get("name") for v in measured or []}
    if not measured:
        problems.append("variableMeasured must list the variables")
    files = sorted((root / "data").glob("**/*.csv"))
    if not files:
        problems.append("no data files under data/")
    for f in files:
        if not DATAFILE.match(f.name):
            problems.append(f"{f.name}: not keyword-value pairs ending _data.csv")
        with f.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        header = rows[0]
        problems += [f"{f.name}: column {c} is not in variableMeasured" for c in header if c not in names]
        problems += [
            f"{f.name}: line {i + 2} has {len(r)} fields" for i, r in enumerate(rows[1:]) if len(r) != len(header)
        ]
    return problems


def test_the_psych_ds_export_follows_the_standard_and_holds_the_export_rows(tmp_path: Path) -> None:
    app = make_test_app(tmp_path / "pds.sqlite3", STUDIES)
    ParticipantActions(app.test_client(), "ind-a").join(PROLIFIC_PID="one").finish(lambda t, s: "unchanged")
    ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="two").finish(lambda t, s: s["options"][0]["value"])
    runner = app.test_cli_runner()
    out = tmp_path / "dataset"
    r = runner.invoke(args=["export-psych-ds", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["rows"] == 3 + 3
    assert check_psych_ds(out) == []
    assert sorted(p.name for p in (out / "data").iterdir()) == ["study-dec_data.csv", "study-inda_data.csv"]
    # the same rows as the plain export, value for value (missing ones written NA)
    plain = tmp_path / "plain.csv"
    assert runner.invoke(args=["export", "ind-a", "--out", str(plain)]).exit_code == 0
    want = read_responses(plain)
    with (out / "data" / "study-inda_data.csv").open(newline="") as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert g["participant"] == w["participant"] and g["item_id"] == w["item_id"]
        assert g["said_changed"] == "false" and g["age"] == str(w["age"])
        assert g["attacked_label"] == ("NA" if w["attacked_label"] is None else w["attacked_label"])
    # a folder that holds something already is refused, and nothing is left half-written
    again = runner.invoke(args=["export-psych-ds", "--out", str(out)])
    assert (
        again.exit_code == 1
        and again.output.strip() == f"Error: {out}: exists already; give a new folder for the dataset"
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dataset")] == []


def test_the_checker_catches_what_the_standard_forbids(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "dataset_description.json").write_text(
        json.dumps({"@type": "Dataset", "name": "x", "variableMeasured": ["a"]})
    )
    (tmp_path / "data" / "my_study.csv").write_text("a,b\n1,2\n")
    assert check_psych_ds(tmp_path) == [
        "@context must be schema.org",
        "description must be a non-empty text",
        "my_study.csv: not keyword-value pairs ending _data.csv",
        "my_study.csv: column b is not in variableMeasured",
    ]
