"""`analysis report` end to end: a simulated 40-participant study on a real (tiny) batch, with attack
files; every section filled; the simulator's parameters recovered within their intervals; error cases."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from support.attack_files import write_fake_result
from support.attack_files import write_fake_transfer
from support.batches import analysis_batch

from analysis.cli import cli
from analysis.simulate import Observer

OBSERVER = Observer(always_unchanged=0.1, dropout=0.05, playback_failure=0.01)
"""The defaults (p_true 0.93, participant / clip SD 0.5 / 0.3, strengths 2 / 1.3 / 1 / 0.8, tie 0.5, d' 0.75,
control d' 4, criterion 1.645, lapse 0.02) plus 10 % always-'unchanged' responders, drop-outs and failed videos."""
LEVEL = 0.99


@pytest.fixture(scope="module")
def batch() -> Path:
    return analysis_batch(5)


@pytest.fixture(scope="module")
def attack_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("attacks")
    write_fake_result(d / "agcn_ab_smart.npz")
    write_fake_result(d / "agcn_ab_l2.npz", loss="l2", scale=0.005, seed=3)
    write_fake_transfer(
        d / "transfer.AB.smart.json",
        {("dgnn", "agcn"): (9, 10), ("agcn", "dgnn"): (10, 10), ("dgnn", "dgnn"): (10, 10), ("agcn", "agcn"): (8, 10)},
    )
    return d


def _simulate(batch: Path, out: Path, participants: int, seed: int, *extra: str) -> None:
    o = OBSERVER
    res = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--participants",
            str(participants),
            "--seed",
            str(seed),
            "--batch",
            str(batch),
            "--out",
            str(out),
            "--always-unchanged",
            str(o.always_unchanged),
            "--dropout",
            str(o.dropout),
            "--playback-failure",
            str(o.playback_failure),
            *extra,
        ],
    )
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def study(batch, attack_dir, tmp_path_factory):
    """The simulated 40-participant study, its report (with --json) and the summary."""
    d = tmp_path_factory.mktemp("study")
    _simulate(batch, d / "responses.csv", 40, 11)
    out = d / "report"
    res = CliRunner().invoke(
        cli,
        [
            "report",
            "--responses",
            str(d / "responses.csv"),
            "--batch",
            str(batch),
            "--attacks",
            str(attack_dir),
            "--out",
            str(out),
            "--json",
            "--level",
            str(LEVEL),
        ],
    )
    assert res.exit_code == 0, res.output
    return {"dir": d, "out": out, "summary": json.loads(res.output)}


def test_every_section_is_filled(study):
    out = study["out"]
    md = (out / "report.md").read_text()
    sections = re.split(r"\n## ", md)[1:]
    titles = [s.split("\n", 1)[0] for s in sections]
    assert titles == [
        "Inputs",
        "Participants and trials",
        "Deceitfulness",
        "Naturalness",
        "Indistinguishability",
        "Data quality",
        "Attack success (Tables 1-3)",
        "Black-box transfer (Table 4)",
        "Confusion of attacked labels (Fig. 2)",
        "Joint correlations (Fig. 4)",
        "Per-joint deviation, SMART vs l2 (Fig. 7)",
        "Methods",
    ]
    for title, body in zip(titles, sections):
        if title not in ("Inputs", "Methods"):
            assert "\n| " in body, f"section {title!r} has no table"
        if title not in ("Inputs", "Methods", "Participants and trials", "Black-box transfer (Table 4)"):
            assert "](figures/" in body, f"section {title!r} has no figure"
    files = study["summary"]["files"]
    for rel in files["tables"]:
        assert (out / rel).is_file() and (len(pd.read_csv(out / rel)) >= 1 or rel == "tables/exclusions.csv"), rel
    for rel in files["figures"]:
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", rel
        # and in vector form beside it: SVG (what the page shows) and PDF, both without a date
        svg, pdf = (out / rel).with_suffix(".svg").read_bytes(), (out / rel).with_suffix(".pdf").read_bytes()
        assert b"<svg" in svg[:500] and b"<dc:date>" not in svg and pdf[:5] == b"%PDF-" and b"/CreationDate" not in pdf
    assert sorted(files["vector_figures"]) == sorted(
        str(Path(p).with_suffix(s)) for p in files["figures"] for s in (".svg", ".pdf")
    )
    page = (out / "report.html").read_text()
    # self-contained: every figure embedded as SVG, nothing fetched from elsewhere
    assert page.count("src='data:image/svg+xml;base64,") == len(files["figures"]) and "image/png" not in page
    assert not re.search(r"src=['\"](?!data:)", page) and "<link" not in page
    # every table sortable and inside a box that scrolls sideways
    assert page.count("<table") == page.count('<div class=wide><table class="dataframe sortable"')
    names = {Path(t).stem for t in files["tables"]}
    assert {
        "counts",
        "exclusions",
        "deceitfulness_rates",
        "deceitfulness_glmm",
        "naturalness_pairs_lr",
        "naturalness_preference",
        "naturalness_bt",
        "naturalness_sign_tests",
        "indistinguishability_participants",
        "indistinguishability_rates",
        "indistinguishability_dprime",
        "indistinguishability_glmm",
        "indistinguishability_screening_bias",
        "deceitfulness_items",
        "deceitfulness_classes",
        "naturalness_items",
        "naturalness_classes",
        "indistinguishability_items",
        "indistinguishability_classes",
        "quality_participants",
        "quality_sensitivity",
        "table1",
        "table4",
    } <= names
    # the batch's settings as a table of rows, not a printed dictionary
    (path,) = (out / "tables").glob("batch_*_settings.csv")
    settings = pd.read_csv(path, keep_default_na=False)
    assert list(settings.columns) == ["part", "setting", "value"] and {"dataset", "model", "attack"} <= set(
        settings["part"]
    )
    assert "{'" not in md  # no raw mapping anywhere in the text
    # no paper figure beside a run whose setting differs from the paper's, and a line saying why
    runs = pd.read_csv(out / "tables" / "attack_success.csv", keep_default_na=False)
    assert (runs["paper"] == "").all() and (runs["no_paper_figure_because"] != "").all()
    assert "No paper figure beside agcn_ab_l2.npz (loss l2: the paper's tables are the SMART loss)" in md
    assert "agcn_ab_smart.npz (canonical threat model: the paper attacked unpreprocessed input)" in md
    assert json.loads((out / "summary.json").read_text())["counts"]


def test_counts_and_exclusions(study):
    counts = pd.read_csv(study["out"] / "tables" / "counts.csv").set_index("study_type")
    assert (counts["recruited"] == 40).all()
    assert (counts["analysed"] <= counts["completed"]).all() and (counts["completed"] < 40).any()  # drop-outs
    trials = pd.read_csv(study["out"] / "tables" / "trials.csv")
    assert (trials["repeated"] > 0).all()  # failed videos shown again
    sc = study["summary"]["indistinguishability"]["screening"]
    assert sc["always_unchanged"] >= 1 and sc["always_unchanged_passing_sensitivity"] == sc["always_unchanged"]
    # the data-quality table flags the always-'unchanged' responders as straight-lining
    q = pd.read_csv(study["out"] / "tables" / "quality_participants.csv")
    ind = q[(q["study_type"] == "indistinguishability") & q["completed"]]
    assert ind["straight_lining"].sum() == sc["always_unchanged"]


def _inside(value: float, ci) -> bool:
    return ci[0] <= value <= ci[1]


def test_simulated_parameters_are_recovered(study):
    imp = OBSERVER.implied()
    s = study["summary"]
    dec = s["deceitfulness"]["overall"]
    assert _inside(imp["p_true_marginal"], dec["ci_bootstrap"]), (imp["p_true_marginal"], dec)
    glmm = pd.read_csv(study["out"] / "tables" / "deceitfulness_glmm.csv")
    icpt = glmm[(glmm["term"] == "intercept") & (glmm["scale"] == "log-odds")]["estimate"].iloc[0]
    assert abs(icpt - math.log(0.93 / 0.07)) < 0.5  # about 3 standard errors (participants and 5 clips)
    bt = s["naturalness"]["bt"]
    for m, lam in imp["log_strength"].items():
        assert _inside(lam, bt[m]["ci"]), (m, lam, bt[m])
    assert _inside(OBSERVER.tie, s["naturalness"]["nu_ci"])
    assert s["naturalness"]["matches_paper"]
    # indistinguishability: the always-'unchanged' responders pass the paper's screen; the control screen removes them
    ctrl = s["indistinguishability"]["with_control_screen"]
    assert _inside(imp["share_unchanged"], ctrl["ci_bootstrap"]), (imp["share_unchanged"], ctrl)
    dp = pd.read_csv(study["out"] / "tables" / "indistinguishability_dprime.csv")
    r = dp[(dp["subset"] == "analysed+controls") & (dp["breakdown"] == "overall")].iloc[0]
    assert r["dprime_low"] <= imp["dprime"] <= r["dprime_high"], (imp["dprime"], r["dprime_low"], r["dprime_high"])
    assert r["control_boot_low"] <= imp["control_hit_rate"] <= r["control_boot_high"]
    assert s["indistinguishability"]["overall"]["share"] > ctrl["share"]  # the screen's known weakness, visible


def test_console_summary_and_batch_only_attack_sections(batch, tmp_path):
    _simulate(
        batch,
        tmp_path / "r.json",
        6,
        3,
        "--deceitfulness-trials",
        "20",
        "--naturalness-motions",
        "10",
        "--indistinguishability-trials",
        "20",
    )
    res = CliRunner().invoke(
        cli,
        [
            "report",
            "--responses",
            str(tmp_path / "r.json"),
            "--batch",
            str(batch),
            "--out",
            str(tmp_path / "out"),
            "--no-glmm",
            "--bootstrap",
            "100",
        ],
    )
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert any(line.startswith("deceitfulness: true label chosen in") and "paper 86.77 %" in line for line in lines)
    assert any(line.startswith("naturalness: ") for line in lines)
    assert any(line.startswith("indistinguishability: attacked judged unchanged") for line in lines)
    assert lines[-1].startswith("wrote ") and "report.html" in lines[-1]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "success of the batch's attacked variants" in md and "figures/confusion_batch.png" in md
    assert "figures/joint_corr_batch.png" in md and "figures/joint_deviation_batch.png" in md
    # the one-page summary for a talk: the console's key numbers and every figure, no tables
    res = CliRunner().invoke(
        cli,
        ["report", "--responses", str(tmp_path / "r.json"), "--batch", str(batch), "--out", str(tmp_path / "talk")]
        + ["--no-glmm", "--bootstrap", "100", "--format", "summary"],
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1].startswith(f"wrote {tmp_path / 'talk' / 'summary.html'} and ")
    page = (tmp_path / "talk" / "summary.html").read_text()
    assert all(html.escape(line) in page for line in lines if line.startswith(("deceitfulness:", "naturalness:")))
    figs = sorted(p.name for p in (tmp_path / "talk" / "figures").glob("*.png"))
    assert figs == sorted(p.name for p in (tmp_path / "out" / "figures").glob("*.png"))
    assert page.count("src='data:image/svg+xml;base64,") == len(figs) and "<table" not in page
    assert not (tmp_path / "talk" / "report.html").exists() and not (tmp_path / "talk" / "tables").exists()


@pytest.fixture(scope="module")
def small(batch, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("small")
    _simulate(batch, d / "r.csv", 3, 1, "--study", "deceitfulness", "--deceitfulness-trials", "5")
    return d / "r.csv"


def _fails(args, match: str, code: int = 1) -> None:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output and re.search(match, res.output), res.output
    if code == 1:
        assert len(res.output.strip().splitlines()) == 1 and res.output.startswith("Error: ")


def _set_first(column: str, value: str):
    """An edit of a CSV export: the first data row's ``column`` set to ``value``."""

    def edit(text: str) -> str:
        lines = text.splitlines()
        header = next(csv.reader([lines[0]]))
        cells = next(csv.reader([lines[1]]))
        cells[header.index(column)] = value
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        return "\n".join([lines[0], buf.getvalue().rstrip("\n"), *lines[2:]]) + "\n"

    return edit


def test_mismatched_and_missing_inputs_are_one_line_errors(batch, small, tmp_path):
    base = ["report", "--batch", str(batch), "--out", str(tmp_path / "o")]
    _fails([*base, "--responses", str(tmp_path / "none.csv")], "responses file not found")
    text = small.read_text()
    batch_id = json.loads((batch / "manifest.json").read_text())["batch_id"]
    for name, edit, match in (
        (
            "other_batch",
            lambda t: t.replace(batch_id, "batch-other"),
            "batch_id 'batch-other' .* is not the batch given",
        ),
        ("unknown_item", lambda t: t.replace(",item-001,", ",item-999,"), "unknown item id.*'item-999'"),
        (
            "unknown_variant",
            lambda t: t.replace(",smart,", ",smarter,"),
            "names variant.*'smarter' that the batch lacks",
        ),
        ("true_label", lambda t: t.replace(",walk,", ",stroll,"), "has true label 'walk' in the batch, but 'stroll'"),
        (
            "bad_value",
            _set_first("response_time_ms", "slow"),
            r"line 2: column 'response_time_ms': expected float, got 'slow'",
        ),
        ("header_only", lambda t: t.splitlines()[0] + "\n", "no responses"),
    ):
        p = tmp_path / f"{name}.csv"
        p.write_text(edit(text))
        _fails([*base, "--responses", str(p)], match)
    _fails([*base, "--responses", str(small), "--study", "nope"], "no responses of study 'nope'")
    _fails(
        ["report", "--batch", str(tmp_path / "nobatch"), "--out", str(tmp_path / "o"), "--responses", str(small)],
        "not a folder",
    )
    bad = tmp_path / "bad.npz"
    bad.write_text("not an npz")
    _fails([*base, "--responses", str(small), "--attacks", str(bad)], "neither an attack result")
    _fails([*base], "Missing option '--responses'", code=2)


def test_report_from_the_study_servers_database(tmp_path):
    """Participants answer through the server (Flask test client); its export, piped in, is the report's input."""
    import random

    from support import server as testing
    from support.batches import server_batch

    rng = random.Random(0)
    studies = [
        ("dec", "deceitfulness", {"trials": 6}),
        ("nat", "naturalness", {"trials": 6}),
        ("ind", "indistinguishability", {"trials": 10}),
    ]
    app = testing.make_test_app(tmp_path / "study.db", studies)

    def choose(trial, state) -> str:
        if trial.design == "deceitfulness":  # the options are the labels' positions on the page
            return str((trial.label_order or "true,attacked").split(",").index("true") + 1)
        if trial.design == "naturalness":
            return rng.choice(["left", "right", "cant_tell"])
        return "changed" if trial.kind == "control" else "unchanged"

    for slug, _, _ in studies:
        for _ in range(2):
            testing.ParticipantActions(app.test_client(), slug).join().finish(choose)
    out = tmp_path / "report"
    export = app.test_cli_runner().invoke(args=["export"])  # `flask --app study_server export | analysis ...`
    assert export.exit_code == 0
    res = CliRunner().invoke(
        cli,
        [
            "report",
            "--responses",
            "-",
            "--batch",
            str(server_batch()),
            "--out",
            str(out),
            "--json",
            "--no-glmm",
            "--bootstrap",
            "100",
        ],
        input=export.output,
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert {k.split(":")[0] for k in s["counts"]} == {"deceitfulness", "naturalness", "indistinguishability"}
    assert s["deceitfulness"]["overall"]["share"] == 1.0 and s["deceitfulness"]["overall"]["n"] == 12
    ind = pd.read_csv(out / "tables" / "indistinguishability_participants.csv")
    assert (ind["sensitivity_accuracy"] == 1.0).all() and (ind["control_hit_rate"] == 1.0).all()
    assert s["indistinguishability"]["overall"]["share"] == 1.0
    assert s["naturalness"]["order_bt"]
    # what is wrong with piped input is named, in one line
    _fails(
        ["report", "--batch", str(server_batch()), "--out", str(tmp_path / "o"), "--responses", "-"],
        "standard input: empty responses file",
    )
