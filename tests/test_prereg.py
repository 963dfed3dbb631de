"""``analysis prereg``: the bundle, its digest (stable; changed by any planned setting), its power analysis
(against an independent exact-binomial computation), and ``analysis report --prereg`` saying whether the data
match it."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from support.batches import server_batch
from support.server import ParticipantActions
from support.server import make_test_app

from analysis.cli import cli as analysis_cli
from study_server.extensions import db
from study_server.models import Study

STUDIES = [
    (
        "ind",
        "indistinguishability",
        {"trials": 5, "practice_trials": 0, "sensitivity_share": 0.4, "control_share": 0.0, "target_participants": 40},
    )
]


@pytest.fixture
def app(tmp_path):
    return make_test_app(tmp_path / "p.sqlite3", STUDIES)


@pytest.fixture
def study_file(app, tmp_path) -> Path:
    f = tmp_path / "study.toml"
    assert app.test_cli_runner().invoke(args=["export-study", "ind", "--out", str(f)]).exit_code == 0
    return f


def prereg(study_file: Path, out: Path, *extra: str, batch: Path | None = None):
    return CliRunner().invoke(
        analysis_cli,
        ["prereg", "--study", str(study_file), "--batch", str(batch or server_batch()), "--out", str(out), *extra],
    )


def digest(out: Path) -> str:
    return (out / "DIGEST").read_text().strip()


def test_the_bundle_holds_every_file_hashed_and_one_digest_stable_across_runs(study_file, tmp_path):
    r1, r2 = prereg(study_file, tmp_path / "a"), prereg(study_file, tmp_path / "b")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output
    a, b = tmp_path / "a", tmp_path / "b"
    names = sorted(p.name for p in a.iterdir())
    assert names == ["DIGEST", "SHA256SUMS", "batch.json", "code.json", "plan.json", "power.json", "study.toml"]
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    assert (a / "study.toml").read_bytes() == study_file.read_bytes()
    sums = (a / "SHA256SUMS").read_text()
    for line in sums.splitlines():  # recomputed here
        want, name = line.split("  ")
        assert hashlib.sha256((a / name).read_bytes()).hexdigest() == want
    assert digest(a) == "sha256:" + hashlib.sha256(sums.encode()).hexdigest() and digest(a) in r1.output
    batch = json.loads((a / "batch.json").read_text())
    assert batch["manifest_sha256"] == hashlib.sha256((server_batch() / "manifest.json").read_bytes()).hexdigest()
    plan = json.loads((a / "plan.json").read_text())
    [h] = plan["hypotheses"]
    assert h["null"] == 0.5 and h["observations"] == 40 * 5 * 3 // 5  # 40 people x 5 trials x 60 % SMART pairs
    assert plan["thresholds"]["sensitivity_screen"] == 0.8 and "pilot participants" in plan["exclusions"]
    code = json.loads((a / "code.json").read_text())
    assert code["version"] and len(code["commit"] or "x" * 40) == 40


@pytest.mark.parametrize(
    "change",
    [
        ("study", "trials = 5", "trials = 6"),
        ("study", "screening_threshold = 0.8", "screening_threshold = 0.75"),
        ("option", "--alpha", "0.01"),
        ("option", "--participants", "41"),
        ("option", "--unchanged-level", "0.55"),
        ("option", "--assumed-unchanged", "0.65"),
        ("option", "--level", "0.9"),
        ("option", "--include-pilot", None),
    ],
)
def test_any_planned_setting_changed_changes_the_digest(study_file, tmp_path, change):
    assert prereg(study_file, tmp_path / "base").exit_code == 0
    kind, a, b = change
    if kind == "study":
        text = study_file.read_text()
        assert a in text
        study_file.write_text(text.replace(a, b, 1))
        r = prereg(study_file, tmp_path / "changed")
    else:
        r = prereg(study_file, tmp_path / "changed", *([a] if b is None else [a, b]))
    assert r.exit_code == 0, r.output
    assert digest(tmp_path / "changed") != digest(tmp_path / "base")


def test_the_power_analysis_matches_an_exact_binomial_computed_here(study_file, tmp_path):
    assert prereg(study_file, tmp_path / "p", "--participants", "20", "--assumed-unchanged", "0.65").exit_code == 0
    [p] = json.loads((tmp_path / "p" / "power.json").read_text())["results"]
    n = 20 * 3  # 20 people x 3 SMART pairs each

    def tail(k: int, n: int, q: float) -> float:
        return sum(math.comb(n, j) * q**j * (1 - q) ** (n - j) for j in range(k, n + 1))

    k = next(k for k in range(n + 2) if tail(k, n, 0.5) <= 0.05)
    assert (p["observations"], p["critical_count"]) == (n, k)
    assert p["power"] == pytest.approx(tail(k, n, 0.65), abs=1e-4)
    need = p["observations_for_80_percent"]
    crit = next(k for k in range(need + 2) if tail(k, need, 0.5) <= 0.05)
    assert tail(crit, need, 0.65) >= 0.8
    assert all(tail(next(k for k in range(m + 2) if tail(k, m, 0.5) <= 0.05), m, 0.65) < 0.8 for m in range(1, need))


def test_bad_inputs_are_one_line_and_nothing_is_written(study_file, tmp_path):
    other = server_batch(4)
    r = prereg(study_file, tmp_path / "x", batch=other)
    assert r.exit_code == 1 and "the study names batch" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    assert "exists and is not empty" in prereg(study_file, tmp_path / "full").output
    bad = tmp_path / "bad.toml"
    bad.write_text('format = "other"\n')
    assert "not a smart-study study file" in prereg(bad, tmp_path / "y").output


def test_the_report_says_whether_the_data_match_the_bundle(app, study_file, tmp_path):
    assert prereg(study_file, tmp_path / "bundle").exit_code == 0
    for k in range(3):
        pa = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID=f"p{k}")
        pa.finish(lambda t, s: "changed" if t.kind != "sensitivity" else "unchanged")
    export = tmp_path / "r.json"
    assert app.test_cli_runner().invoke(args=["export", "ind", "--out", str(export)]).exit_code == 0

    def report(*extra: str, responses: Path = export) -> str:
        args = [
            "report",
            "--responses",
            str(responses),
            "--batch",
            str(server_batch()),
            "--out",
            str(tmp_path / "rep"),
            "--bootstrap",
            "20",
            "--no-glmm",
            "--prereg",
            str(tmp_path / "bundle"),
        ]
        r = CliRunner().invoke(analysis_cli, [*args, *extra])
        assert r.exit_code == 0, r.output
        return next(line for line in r.output.splitlines() if line.startswith("Preregistration"))

    line = report()
    batch_id = json.loads((tmp_path / "bundle" / "batch.json").read_text())["batch_id"]
    assert line == (
        f"Preregistration {digest(tmp_path / 'bundle')}: bundle intact; batch {batch_id} matches; "
        "study settings as planned; analysis settings as planned."
    )
    assert line in (tmp_path / "rep" / "report.md").read_text()
    assert "analysis settings DIFFER from the plan: include_pilot" in report("--include-pilot")
    assert "DIFFER from the plan: sensitivity_threshold" in report("--sensitivity-threshold", "0.7")

    with app.app_context():  # the study changed after the plan was frozen
        db.session.execute(select(Study)).scalar_one().screening_threshold = 0.7
        db.session.commit()
    changed = tmp_path / "changed.json"
    assert app.test_cli_runner().invoke(args=["export", "ind", "--out", str(changed)]).exit_code == 0
    assert "study settings DIFFER: settings.screening_threshold" in report(responses=changed)

    csv = tmp_path / "r.csv"
    assert app.test_cli_runner().invoke(args=["export", "ind", "--out", str(csv)]).exit_code == 0
    assert "study settings not checked (a CSV export carries no study file" in report(responses=csv)

    plan = tmp_path / "bundle" / "plan.json"
    plan.write_text(plan.read_text().replace('"alpha_one_sided": 0.05', '"alpha_one_sided": 0.1'))
    assert "bundle ALTERED (plan.json)" in report()
