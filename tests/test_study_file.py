"""A study as a file: export-study writes every setting; create-study --from makes the same study; bad files
get one line naming the file, the line and the setting."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from support.batches import server_batch

from study_server import create_app
from study_server.settings import STUDY_SETTINGS
from study_server.settings import block_fields


@pytest.fixture
def runner(tmp_path):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'f.sqlite3'}"})
    r = app.test_cli_runner()
    assert r.invoke(args=["db", "upgrade"]).exit_code == 0
    return r


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def _create(runner, *args: str) -> str:
    return _ok(runner.invoke(args=["create-study", *args, "--batch", str(server_batch()), "--no-decode"]))


def test_a_study_made_from_its_file_is_the_same_study(runner, tmp_path: Path) -> None:
    _create(
        runner,
        "orig",
        "--type",
        "indistinguishability",
        "--trials",
        "7",
        "--plays",
        "2",
        "--slowdown",
        "3",
        "--sensitivity-share",
        "0.3",
        "--control-share",
        "0.15",
        "--threshold",
        "0.75",
        "--completion-code",
        "C0DE",
        "--target",
        "40",
        "--no-allow-anonymous",
        "--header",
        'Lab of Movement: "walks"',
        "--consent-text",
        "We study walking.\n\nYou may stop at any time.",
    )
    f = tmp_path / "study.toml"
    _ok(runner.invoke(args=["export-study", "orig", "--out", str(f)]))
    data = tomllib.loads(f.read_text())
    # every setting is written, with the values given (independently of how the server stores them)
    assert data["slug"] == "orig" and data["study_type"] == "indistinguishability"
    assert set(data["settings"]) == set(STUDY_SETTINGS) - {"status", "control_hit_threshold"}  # None: left out
    assert data["settings"]["header"] == 'Lab of Movement: "walks"'
    assert data["settings"]["consent_text"] == "We study walking.\n\nYou may stop at any time."
    assert data["settings"]["screening_threshold"] == 0.75 and data["settings"]["completion_code"] == "C0DE"
    assert data["settings"]["target_participants"] == 40 and data["settings"]["allow_anonymous"] is False
    (block,) = data["blocks"]
    assert set(block) == {"study_type"} | {x.name for x in block_fields()}  # seconds: the clip's length, stored
    assert block["seconds"] == 1.0  # the server test batch's clips last 1 s
    assert (block["trials"], block["plays"], block["slowdown"]) == (7, 2, 3.0)
    assert (block["sensitivity_share"], block["control_share"], block["variants"]) == (0.3, 0.15, ["smart"])
    assert "# Slow-down factor. 1 plays in real time; 2 plays twice as slowly." in f.read_text()

    assert _ok(runner.invoke(args=["create-study", "copy", "--from", str(f)])).strip() == "/s/copy"
    copy = _ok(runner.invoke(args=["export-study", "copy"]))
    assert copy == f.read_text().replace("'orig'", "'copy'").replace('slug = "orig"', 'slug = "copy"')
    # the file is the study's, byte for byte, on every export
    assert _ok(runner.invoke(args=["export-study", "orig"])) == f.read_text()


def test_a_combined_session_round_trips(runner, tmp_path: Path) -> None:
    _create(
        runner, "combo", "--type", "combined", "--block", "deceitfulness", "--block", "naturalness", "--trials", "4"
    )
    f = tmp_path / "c.toml"
    _ok(runner.invoke(args=["export-study", "combo", "--out", str(f)]))
    blocks = tomllib.loads(f.read_text())["blocks"]
    assert [(b["study_type"], b["trials"]) for b in blocks] == [("deceitfulness", 4), ("naturalness", 4)]
    _ok(runner.invoke(args=["create-study", "combo2", "--from", str(f)]))
    assert _ok(runner.invoke(args=["export-study", "combo2"])).replace("combo2", "combo") == f.read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        (("trials = 7", "trials = 0"), "{f}:{line}: blocks[1].trials: trials must be an integer in 1..10000, got 0"),
        (
            ("screening_threshold = 0.75", "screening_threshold = 1.5"),
            "{f}:{line}: settings.screening_threshold: screening_threshold must be a number in [0, 1], got 1.5",
        ),
        (("plays = 2", "plays = 2\ncolour = 3"), "{f}:{line}: blocks[1].colour: unknown setting"),
        (("trials = 7", "trials = [7"), "{f}:{toml_line}: not valid TOML: Unclosed array"),
        (('format = "smart-study-study"', 'format = "other"'), "{f}:{line}: format must be 'smart-study-study'"),
        (
            ('study_type = "indistinguishability"\nbatch', 'study_type = "naturalness"\nbatch'),
            "{f}:{line}: blocks[1].study_type must be the study's, 'naturalness'",
        ),
    ],
)
def test_a_bad_study_file_is_refused_naming_the_line(runner, tmp_path: Path, change, message) -> None:
    _create(runner, "orig", "--type", "indistinguishability", "--trials", "7", "--plays", "2", "--threshold", "0.75")
    f = tmp_path / "study.toml"
    _ok(runner.invoke(args=["export-study", "orig", "--out", str(f)]))
    old, new = change
    text = f.read_text()
    assert text.count(old) == 1
    f.write_text(text.replace(old, new))
    first_new = new.splitlines()[-1] if "colour" in new else new.splitlines()[0]
    line = next(n for n, s in enumerate(f.read_text().splitlines(), 1) if s == first_new)
    if "study_type must be" in message:  # the block's own study_type line is where the conflict shows
        line = next(
            n for n, s in enumerate(f.read_text().splitlines(), 1) if s == 'study_type = "indistinguishability"'
        )
    r = runner.invoke(args=["create-study", "renamed", "--from", str(f)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    out = r.output.strip().removeprefix("Error: ")
    assert len(out.splitlines()) == 1
    # an unclosed array is noticed where the parser meets the next line that cannot belong to it
    toml_line = next(n for n, s in enumerate(f.read_text().splitlines(), 1) if n > line and not s.startswith("#"))
    assert out.startswith(message.format(f=f, line=line, toml_line=toml_line)), out
    assert "/s/renamed" not in _ok(runner.invoke(args=["export-study", "orig"]))  # and no study was made


def test_create_from_file_refuses_options_and_a_different_batch(runner, tmp_path: Path) -> None:
    _create(runner, "orig", "--type", "deceitfulness")
    f = tmp_path / "s.toml"
    _ok(runner.invoke(args=["export-study", "orig", "--out", str(f)]))
    r = runner.invoke(args=["create-study", "x", "--from", str(f), "--trials", "3"])
    assert r.exit_code == 2 and "--from takes every setting from the file" in r.output
    f.write_text(f.read_text().replace('batch = "', 'batch = "other-'))
    r = runner.invoke(args=["create-study", "x", "--from", str(f)])
    line = next(n for n, s in enumerate(f.read_text().splitlines(), 1) if s.startswith("batch = "))
    assert r.exit_code == 1 and f"{f}:{line}: batch: no imported batch with id 'other-" in r.output


def test_the_study_file_comes_with_the_study_in_its_export_and_on_its_page(tmp_path: Path) -> None:
    import json

    from support.server import ResearcherActions
    from support.server import make_test_app

    app = make_test_app(tmp_path / "f.sqlite3", [("kept", "deceitfulness", {"trials": 3})], researcher=True)
    text = app.test_cli_runner().invoke(args=["export-study", "kept"]).output
    assert tomllib.loads(text)["slug"] == "kept"
    out = tmp_path / "r.json"
    assert app.test_cli_runner().invoke(args=["export", "kept", "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text())["study_files"] == {
        "kept": text
    }  # the responses and the plan they were taken under
    ra = ResearcherActions(app.test_client())
    assert ra.login().status_code == 302
    page = ra.client.get("/admin/studies/kept").get_data(as_text=True)
    assert 'href="/admin/studies/kept/study.toml"' in page
    r = ra.client.get("/admin/studies/kept/study.toml")
    assert r.status_code == 200 and r.get_data(as_text=True) == text
    assert r.headers["Content-Disposition"] == 'attachment; filename="kept-study.toml"'
    assert json.loads(ra.client.get("/admin/studies/kept/export.json").get_data(as_text=True))["study_files"] == {
        "kept": text
    }
