"""``analysis``: the researcher's command line for results: ``report``, ``simulate``, ``prereg`` and ``power``.

Heavy libraries (pandas, statsmodels, matplotlib) are imported when a command runs, so
``import analysis.cli`` stays light; nothing here imports torch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from typing import Sequence

import click

from stimuli.cliutil import user_errors as _user_errors
from stimuli.screening import CONTROL_HIT_THRESHOLD
from stimuli.screening import SENSITIVITY_THRESHOLD

from . import __version__


@click.group()
@click.version_option(__version__, prog_name="analysis")
def cli() -> None:
    """Turn study responses and attack results into the paper's tables and figures."""


def _attack_paths(values: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in values:
        if p.is_dir():
            found = sorted(p.glob("*.npz")) + sorted(p.glob("transfer*.json"))
            if not found:
                raise click.ClickException(f"{p}: no attack results (*.npz) or transfer summaries (transfer*.json)")
            out += found
        else:
            out.append(p)
    return out


def _stdin_responses(columns: Sequence[str]):
    """The responses export piped in on standard input, read as a file would be (errors name standard input)."""
    import tempfile

    from stimuli.errors import DataError

    from .readers import read_responses_frame

    with tempfile.TemporaryDirectory(prefix="analysis-stdin-") as tmp:
        path = Path(tmp) / "responses"
        path.write_bytes(sys.stdin.buffer.read())
        try:
            return read_responses_frame(path, columns)
        except DataError as e:
            raise DataError(str(e).replace(str(path), "standard input")) from None


@cli.command()
@click.option(
    "--responses",
    "responses",
    type=click.Path(path_type=Path),
    required=True,
    help="Exported responses (CSV or JSON); - reads them from standard input.",
)
@click.option("--study", "studies", multiple=True, help="Only these study slugs (repeat; default: all).")
@click.option(
    "--batch",
    "batch_dirs",
    type=click.Path(path_type=Path),
    multiple=True,
    required=True,
    help="Stimulus batch folder the responses refer to (repeat for several).",
)
@click.option(
    "--attacks",
    "attack_files",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Attack result (.npz) or transfer summary (.json), or a folder of them (repeat).",
)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder for the report.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of text.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["full", "summary"]),
    default="full",
    show_default=True,
    help="full: the whole report; summary: one page (summary.html: the key numbers and the figures) for a talk.",
)
@click.option(
    "--bootstrap",
    "n_boot",
    type=click.IntRange(0, 100_000),
    default=1000,
    show_default=True,
    help="Bootstrap replicates for the intervals.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option(
    "--level",
    type=click.FloatRange(0.5, 1, max_open=True),
    default=0.95,
    show_default=True,
    help="Confidence level of the intervals.",
)
@click.option(
    "--sensitivity-threshold",
    type=click.FloatRange(0, 1),
    default=SENSITIVITY_THRESHOLD,
    show_default=True,
    help="Paper's screen: minimum accuracy on original | original trials.",
)
@click.option(
    "--control-threshold",
    type=click.FloatRange(0, 1),
    default=CONTROL_HIT_THRESHOLD,
    show_default=True,
    help="Positive-control screen: minimum hit rate on original | control trials.",
)
@click.option("--glmm/--no-glmm", default=True, show_default=True, help="Fit the mixed logistic model.")
@click.option(
    "--include-pilot",
    is_flag=True,
    help="Analyse the pilot participants too (left out by default: a pilot tries the study, it is not its data).",
)
@click.option(
    "--prereg",
    "prereg_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="A preregistration bundle (analysis prereg): say whether these data and settings match it.",
)
@click.option(
    "--glmm-max-participants",
    type=click.IntRange(2),
    default=100,
    show_default=True,
    help="Fit the mixed model on a seeded random subset of at most this many participants.",
)
@click.option(
    "--fast-ms",
    type=click.FloatRange(0),
    default=250.0,
    show_default=True,
    help="Data quality: an answer within this many ms of answering becoming possible is too fast.",
)
@click.option(
    "--fast-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.25,
    show_default=True,
    help="Data quality: flag a participant with at least this share of too-fast answers (0.5: median too fast).",
)
@click.option(
    "--same-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.9,
    show_default=True,
    help="Data quality: flag straight-lining, one side / label position / answer on at least this share of trials.",
)
@click.option(
    "--top-items",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Per-stimulus tables: mark this many items with the largest leave-one-out influence.",
)
@_user_errors
def report(
    responses: Path,
    studies: Sequence[str],
    batch_dirs: Sequence[Path],
    attack_files: Sequence[Path],
    out_dir: Path,
    as_json: bool,
    fmt: str,
    n_boot: int,
    seed: int,
    level: float,
    sensitivity_threshold: float,
    control_threshold: float,
    glmm: bool,
    include_pilot: bool,
    prereg_dir: Path | None,
    glmm_max_participants: int,
    fast_ms: float = 250.0,
    fast_share: float = 0.25,
    same_share: float = 0.9,
    top_items: int = 3,
) -> None:
    """Write the report (report.html, report.md, tables/*.csv, figures/*.png/.svg/.pdf, summary.json) into --out.

    Reads responses from --responses FILE (the server's CSV or JSON export; - for standard
    input, so `flask --app study_server export | analysis report --responses - ...` goes
    from a study's database to its report), the stimulus batch(es) they refer to, and any
    attack result files; checks that they belong together (batch ids, item ids, variants,
    labels) and prints a summary.
    """
    from stimuli.attack_results import read_attack_files

    from .perceptual import Options
    from .readers import REPORT_COLUMNS
    from .readers import attach_batches
    from .readers import describe_inputs
    from .readers import dumps
    from .readers import load_batches
    from .readers import read_responses_frame
    from .report import build_report
    from .report import write_report

    t0 = time.perf_counter()
    batches = load_batches(batch_dirs)
    if str(responses) == "-":
        df, source = _stdin_responses(REPORT_COLUMNS), "standard input"
    else:
        df, source = read_responses_frame(responses, REPORT_COLUMNS), str(responses)
    if studies:
        missing = sorted(set(studies) - set(df["study"].astype(str).unique()))
        if missing:
            raise click.ClickException(f"{source}: no responses of study {', '.join(map(repr, missing))}")
        df = df[df["study"].astype(str).isin(studies)]
    pilot = df["pilot"].fillna(False).to_numpy(bool)
    pilots = int(df.loc[pilot, "participant"].nunique())
    if not include_pilot:
        df = df[~pilot]
    df = attach_batches(df, batches, source)
    runs, transfers = read_attack_files(_attack_paths(attack_files))
    opts = Options(
        n_boot=n_boot,
        seed=seed,
        level=level,
        sensitivity_threshold=sensitivity_threshold,
        control_threshold=control_threshold,
        glmm=glmm,
        glmm_max_participants=glmm_max_participants,
        fast_ms=fast_ms,
        fast_share=fast_share,
        same_share=same_share,
        top_items=top_items,
    )
    inputs = {
        "responses": source,
        **describe_inputs(df),
        "pilot_participants": {"found": pilots, "analysed": include_pilot},
        "batch_dirs": [str(b) for b in batch_dirs],
        "attack_files": [str(p) for p in _attack_paths(attack_files)],
    }
    if prereg_dir is not None:
        inputs["preregistration"] = _prereg_check(
            prereg_dir,
            batches,
            None if str(responses) == "-" else responses,
            {
                "level": level,
                "sensitivity_threshold": sensitivity_threshold,
                "control_threshold": control_threshold,
                "include_pilot": include_pilot,
            },
        )
    rep = build_report(df, batches, runs, transfers, opts, inputs)
    files = write_report(rep, out_dir, summary_only=fmt == "summary")
    seconds = time.perf_counter() - t0
    if as_json:
        click.echo(dumps({**rep.summary, "files": files, "seconds": seconds}))
        return
    if prereg_dir is not None:
        click.echo(inputs["preregistration"]["text"])
    if pilots:
        click.echo(f"{pilots} pilot participant(s) {'analysed (--include-pilot)' if include_pilot else 'left out'}")
    for line in rep.console:
        click.echo(line)
    if fmt == "summary":
        click.echo(f"wrote {files['summary']} and {len(files['figures'])} figures in {seconds:.1f} s")
        return
    click.echo(
        f"wrote {files['html']}, {files['markdown']}, {len(files['tables'])} tables and "
        f"{len(files['figures'])} figures (PNG, SVG, PDF) in {seconds:.1f} s"
    )


def _prereg_check(bundle: Path, batches: Any, responses: Path | None, settings: dict[str, Any]) -> dict[str, Any]:
    import json

    from stimuli.batch import MANIFEST
    from stimuli.fileio import file_sha256

    from .prereg import check_bundle

    hashes = {bid: file_sha256(root / MANIFEST) for bid, root in batches.roots.items()}
    study_files = None
    if responses is not None and responses.read_bytes()[:64].lstrip().startswith(b"{"):
        study_files = json.loads(responses.read_text(encoding="utf-8")).get("study_files")
    return check_bundle(bundle, hashes, study_files, settings)


@cli.command()
@click.option("--study", "study_path", type=click.Path(path_type=Path), required=True, help="The study file.")
@click.option("--batch", "batch_dir", type=click.Path(path_type=Path), required=True, help="Its stimulus batch.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="A new folder for the bundle.")
@click.option("--participants", type=click.IntRange(1), default=None, help="Planned sample (default: the target).")
@click.option("--alpha", type=click.FloatRange(0, 0.5, min_open=True), default=0.05, show_default=True)
@click.option("--level", type=click.FloatRange(0.5, 1, max_open=True), default=0.95, show_default=True)
@click.option(
    "--unchanged-level",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.5,
    show_default=True,
    help="Indistinguishability: the share of 'unchanged' SMART must exceed.",
)
@click.option("--assumed-deceit", type=click.FloatRange(0, 1), default=0.6, show_default=True)
@click.option("--assumed-preference", type=click.FloatRange(0, 1), default=0.6, show_default=True)
@click.option("--assumed-unchanged", type=click.FloatRange(0, 1), default=0.6, show_default=True)
@click.option("--include-pilot", is_flag=True, help="Plan to analyse pilot participants too.")
@click.option(
    "--power",
    "power_file",
    type=click.Path(path_type=Path),
    default=None,
    help="A power.json written by analysis power: copied into the bundle, its table into the plan.",
)
@click.option("--json", "as_json", is_flag=True)
@_user_errors
def prereg(
    study_path: Path,
    batch_dir: Path,
    out: Path,
    participants: int | None,
    alpha: float,
    level: float,
    unchanged_level: float,
    assumed_deceit: float,
    assumed_preference: float,
    assumed_unchanged: float,
    include_pilot: bool,
    power_file: Path | None,
    as_json: bool,
) -> None:
    """Freeze the plan before data come in: study file, batch hash, analysis plan, power, code version, digest."""
    from stimuli.batch import load_batch

    from .prereg import PlanOptions
    from .prereg import write_bundle
    from .readers import dumps

    opts = PlanOptions(
        alpha=alpha,
        level=level,
        unchanged_level=unchanged_level,
        assumed_deceit=assumed_deceit,
        assumed_preference=assumed_preference,
        assumed_unchanged=assumed_unchanged,
        participants=participants,
        include_pilot=include_pilot,
    )
    got = write_bundle(study_path, load_batch(batch_dir), batch_dir, out, opts, power_file)
    if as_json:
        click.echo(dumps(got))
        return
    for p in got["power"]:
        need = p["observations_for_80_percent"]
        click.echo(f"{p['id']}: {p['observations']} observations, power {p['power']:.2f} (80 % needs {need})")
    sim = got.get("simulated_power")
    if sim is not None:
        click.echo(
            f"simulated power: {len(sim['table'])} rows from {power_file} (plan.json: simulated_power)"
            + ("" if sim["same_batch"] else f"; simulated on batch {', '.join(sim['simulated_on'])}, not this one")
        )
    click.echo(f"wrote {out}: digest {got['digest']}")


@cli.command()
@click.option("--participants", type=click.IntRange(1), required=True, help="Participants per study.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--batch",
    "batch_dirs",
    type=click.Path(path_type=Path),
    multiple=True,
    required=True,
    help="Stimulus batch folder to draw the trials from (repeat for several).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Responses file (.csv or .json).")
@click.option(
    "--study",
    "studies",
    type=click.Choice(["deceitfulness", "naturalness", "indistinguishability"]),
    multiple=True,
    help="Study types to simulate (repeat; default: all three).",
)
@click.option("--deceitfulness-trials", type=click.IntRange(1), default=100, show_default=True)
@click.option(
    "--naturalness-motions",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Motions per participant; two trials each (SMART vs an ablation, two ablations).",
)
@click.option("--indistinguishability-trials", type=click.IntRange(1), default=100, show_default=True)
@click.option("--sensitivity-share", type=click.FloatRange(0, 1), default=0.3, show_default=True)
@click.option("--control-share", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--practice-trials", type=click.IntRange(0), default=2, show_default=True)
@click.option(
    "--perceivability-variant",
    "perc_variants",
    multiple=True,
    help="Attacked variant(s) on the right in perceivability trials (default: smart).",
)
@click.option(
    "--screen-threshold",
    type=click.FloatRange(0, 1),
    default=SENSITIVITY_THRESHOLD,
    show_default=True,
    help="The server's exclusion: sensitivity accuracy below this.",
)
@click.option(
    "--control-screen",
    type=click.FloatRange(0, 1),
    default=None,
    help="Also exclude a positive-control hit rate below this (default: not screened).",
)
@click.option(
    "--slowdown",
    type=click.FloatRange(min=1.0),
    default=1.0,
    show_default=True,
    help="Playback slow-down of the indistinguishability clips.",
)
@click.option(
    "--p-true",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.93,
    show_default=True,
    help="Deceitfulness: P(true label) for a typical participant and clip.",
)
@click.option("--participant-sd", type=click.FloatRange(0), default=0.5, show_default=True, help="Log-odds SD.")
@click.option("--clip-sd", type=click.FloatRange(0), default=0.3, show_default=True, help="Log-odds SD.")
@click.option(
    "--strength",
    "strengths",
    multiple=True,
    metavar="NAME=VALUE",
    help="Naturalness strength of a method (default smart=2, l2-acc=1.3, l2=1, l2-bone=0.8).",
)
@click.option("--tie", type=click.FloatRange(0), default=0.5, show_default=True, help="Davidson's tie parameter.")
@click.option("--dprime", type=float, default=0.75, show_default=True, help="d' of an attacked clip.")
@click.option("--dprime-sd", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--control-dprime", type=float, default=4.0, show_default=True, help="d' of a positive control.")
@click.option("--criterion", type=float, default=1.645, show_default=True, help="'changed' above this.")
@click.option("--lapse", type=click.FloatRange(0, 1), default=0.02, show_default=True)
@click.option(
    "--guessers",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of participants answering at random.",
)
@click.option(
    "--always-unchanged",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share answering 'unchanged' to every indistinguishability trial.",
)
@click.option("--dropout", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--playback-failure", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the parameters and implied values as JSON.")
@_user_errors
def simulate(
    participants: int,
    seed: int,
    batch_dirs: Sequence[Path],
    out: Path,
    studies: Sequence[str],
    deceitfulness_trials: int,
    naturalness_motions: int,
    indistinguishability_trials: int,
    sensitivity_share: float,
    control_share: float,
    practice_trials: int,
    perc_variants: Sequence[str],
    screen_threshold: float,
    control_screen: float | None,
    slowdown: float,
    p_true: float,
    participant_sd: float,
    clip_sd: float,
    strengths: Sequence[str],
    tie: float,
    dprime: float,
    dprime_sd: float,
    control_dprime: float,
    criterion: float,
    lapse: float,
    guessers: float,
    always_unchanged: float,
    dropout: float,
    playback_failure: float,
    as_json: bool,
) -> None:
    """Simulate participants of the three studies on a stimulus batch; write responses in the export format.

    Each study type gets --participants people of the observer model (see
    analysis.simulate); the file is what the study server exports, so `analysis report`
    reads it. Use it for power analysis: simulate, report, look at the interval widths.
    """
    from dataclasses import asdict

    from .readers import dumps
    from .readers import load_batches
    from .simulate import Design
    from .simulate import Observer
    from .simulate import observer_from_options
    from .simulate import parse_strengths
    from .simulate import simulate as run
    from .simulate import write_responses

    batches = load_batches(batch_dirs)
    obs = observer_from_options(
        Observer(),
        parse_strengths(strengths),
        p_true=p_true,
        participant_sd=participant_sd,
        clip_sd=clip_sd,
        tie=tie,
        dprime=dprime,
        dprime_sd=dprime_sd,
        control_dprime=control_dprime,
        criterion=criterion,
        lapse=lapse,
        guessers=guessers,
        always_unchanged=always_unchanged,
        dropout=dropout,
        playback_failure=playback_failure,
    )
    design = Design(
        studies=tuple(studies) or Design().studies,
        deceitfulness_trials=deceitfulness_trials,
        naturalness_motions=naturalness_motions,
        indistinguishability_trials=indistinguishability_trials,
        sensitivity_share=sensitivity_share,
        control_share=control_share,
        practice_trials=practice_trials,
        perceivability_variants=tuple(perc_variants) or ("smart",),
        screen_threshold=screen_threshold,
        control_screen=control_screen,
        slowdown=slowdown,
    )
    t0 = time.perf_counter()
    df = run(batches, participants, seed, obs, design)
    write_responses(df, out)
    payload = {
        "out": str(out),
        "rows": int(len(df)),
        "participants_per_study": participants,
        "seed": seed,
        "observer": asdict(obs),
        "design": asdict(design),
        "implied": obs.implied(),
        "seconds": time.perf_counter() - t0,
    }
    if as_json:
        click.echo(dumps(payload))
        return
    imp = obs.implied()
    click.echo(
        f"wrote {out}: {len(df)} rows, {participants} participants x {len(design.studies)} "
        f"stud{'y' if len(design.studies) == 1 else 'ies'} ({payload['seconds']:.1f} s)"
    )
    click.echo(
        f"implied: P(true label) {imp['p_true_marginal']:.3f} (typical {p_true:.3f}); attacked judged "
        f"unchanged {imp['share_unchanged']:.3f}; d' {imp['dprime']:.2f}; control hits "
        f"{imp['control_hit_rate']:.3f}"
    )


@cli.command()
@click.option(
    "--batch",
    "batch_dirs",
    type=click.Path(path_type=Path),
    multiple=True,
    required=True,
    help="Stimulus batch folder the study will show (repeat for several).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for power.csv/.json/.png/.svg.")
@click.option(
    "--participants",
    "participants_text",
    default="10,20,40,80",
    show_default=True,
    help="Participants per study to try, comma-separated.",
)
@click.option(
    "--trials",
    "trials_text",
    default="100",
    show_default=True,
    help="Trials per participant to try, comma-separated (naturalness: two per motion, so even).",
)
@click.option(
    "--stimuli",
    "stimuli_text",
    default=None,
    help="Items of the batch to use (its first N), comma-separated (default: all).",
)
@click.option(
    "--study",
    "studies",
    type=click.Choice(["deceitfulness", "naturalness", "indistinguishability"]),
    multiple=True,
    help="Designs to plan (repeat; default: every design the batch can serve).",
)
@click.option("--replicates", type=int, default=200, show_default=True, help="Simulated studies per cell.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=None, help="Worker processes (default: the number of cores).")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Level of every test.")
@click.option("--level", type=float, default=0.95, show_default=True, help="Confidence level of the intervals.")
@click.option(
    "--unchanged-level",
    type=float,
    default=0.5,
    show_default=True,
    help="Indistinguishability: the share of 'unchanged' SMART must exceed.",
)
@click.option(
    "--sided",
    type=click.Choice(["one", "two"]),
    default="one",
    show_default=True,
    help="one: one-sided tests (as preregistered); two: the report's two-sided p-values, in the hypothesised "
    "direction.",
)
@click.option(
    "--bootstrap",
    "n_boot",
    type=int,
    default=1000,
    show_default=True,
    help="Bootstrap replicates of the report's interval (0: its Wilson interval instead, faster, too narrow).",
)
@click.option("--sensitivity-share", type=float, default=0.3, show_default=True)
@click.option("--control-share", type=float, default=0.1, show_default=True)
@click.option("--screen-threshold", type=float, default=SENSITIVITY_THRESHOLD, show_default=True)
@click.option("--p-true", type=float, default=0.93, show_default=True, help="Deceitfulness: P(true label), typical.")
@click.option("--participant-sd", type=float, default=0.5, show_default=True, help="Log-odds SD.")
@click.option("--clip-sd", type=float, default=0.3, show_default=True, help="Log-odds SD.")
@click.option("--strength", "strengths", multiple=True, metavar="NAME=VALUE", help="Naturalness strength of a method.")
@click.option("--tie", type=float, default=0.5, show_default=True, help="Davidson's tie parameter.")
@click.option("--dprime", type=float, default=0.75, show_default=True, help="d' of an attacked clip.")
@click.option("--dprime-sd", type=float, default=0.0, show_default=True)
@click.option("--control-dprime", type=float, default=4.0, show_default=True)
@click.option("--criterion", type=float, default=1.645, show_default=True)
@click.option("--lapse", type=float, default=0.02, show_default=True)
@click.option("--guessers", type=float, default=0.0, show_default=True)
@click.option("--always-unchanged", type=float, default=0.0, show_default=True)
@click.option("--dropout", type=float, default=0.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print power.json instead of the table.")
@_user_errors
def power(
    batch_dirs: Sequence[Path],
    out: Path,
    participants_text: str,
    trials_text: str,
    stimuli_text: str | None,
    studies: Sequence[str],
    replicates: int,
    seed: int,
    workers: int | None,
    alpha: float,
    level: float,
    unchanged_level: float,
    sided: str,
    n_boot: int,
    sensitivity_share: float,
    control_share: float,
    screen_threshold: float,
    strengths: Sequence[str],
    as_json: bool,
    **observer: float,
) -> None:
    """Simulated power of the report's tests: participants (trials, stimuli) needed for each design of the batch.

    For every cell of the sweep, --replicates studies of the observer model (analysis
    simulate) are analysed as `analysis report` does and each hypothesis is tested:
    deceitfulness above the label-prior baseline, SMART preferred over each ablation (Holm),
    the share judged unchanged above --unchanged-level. Writes power.csv, power.json,
    power.png and power.svg into --out and prints the table; `analysis prereg --power
    OUT/power.json` puts the table into a preregistration bundle.
    """
    from tqdm import tqdm

    from stimuli.errors import DataError

    from .power import PowerSettings
    from .power import format_table
    from .power import parse_counts
    from .power import run_power
    from .power import write_power
    from .readers import dumps
    from .simulate import Observer
    from .simulate import observer_from_options
    from .simulate import parse_strengths

    participants = parse_counts(participants_text, "--participants")
    trials = parse_counts(trials_text, "--trials")
    stimuli = parse_counts(stimuli_text, "--stimuli") if stimuli_text is not None else None
    checks = [
        ("--replicates", replicates, replicates >= 1, ">= 1"),
        ("--workers", workers, workers is None or workers >= 1, ">= 1"),
        ("--seed", seed, seed >= 0, ">= 0"),
        ("--alpha", alpha, 0 < alpha < 1, "in (0, 1)"),
        ("--level", level, 0.5 <= level < 1, "in [0.5, 1)"),
        ("--unchanged-level", unchanged_level, 0 <= unchanged_level < 1, "in [0, 1)"),
        ("--bootstrap", n_boot, 0 <= n_boot <= 100_000, "in 0..100000"),
        ("--screen-threshold", screen_threshold, 0 <= screen_threshold <= 1, "in [0, 1]"),
    ]
    for name, value, ok, want in checks:
        if not ok:
            raise DataError(f"{name} must be {want}, got {value!r}")
    settings = PowerSettings(
        observer=observer_from_options(Observer(), parse_strengths(strengths), **observer),
        seed=seed,
        alpha=alpha,
        level=level,
        unchanged_level=unchanged_level,
        sided=sided,
        n_boot=n_boot,
        sensitivity_share=sensitivity_share,
        control_share=control_share,
        screen_threshold=screen_threshold,
    )
    designs = list(studies) or None
    bars: list[Any] = []

    def start(n: int) -> None:
        bars.append(tqdm(total=n, desc="power", unit="study", file=sys.stderr, disable=as_json))

    def step(k: int) -> None:
        bars[-1].update(k)

    try:
        result = run_power(
            batch_dirs, settings, participants, trials, stimuli, designs, replicates, workers, step, start
        )
    finally:
        for bar in bars:
            bar.close()
    files = write_power(result, out)
    if as_json:
        click.echo(dumps({**result, "files": files}))
        return
    s = result["settings"]
    click.echo(
        f"{s['replicates']} simulated studies per cell; alpha {s['alpha']:g}, {s['tests']}; "
        f"half-widths of {s['level']:g} intervals: {s['interval']} (naturalness: Wilson on the decisive answers)"
    )
    for note in result["notes"]:
        click.echo(f"note: {note}")
    click.echo(format_table(result))
    click.echo(
        f"wrote {files['csv']}, {files['json']}, {files['png']}, {files['svg']} "
        f"({result['workers']} workers, {result['seconds']:.1f} s)"
    )


@cli.command()
@click.option(
    "--responses",
    type=click.Path(path_type=Path),
    required=True,
    help="The responses export (CSV or JSON; - for standard input).",
)
@click.option(
    "--batch", "batch_dirs", type=click.Path(path_type=Path), multiple=True, required=True, help="Stimulus batch."
)
@click.option("--study", "studies", multiple=True, help="Only these study slugs (repeat; default: all).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the tables and the figure.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(0), default=200, show_default=True, help="Resamples.")
@click.option("--level", type=click.FloatRange(0.5, 1, max_open=True), default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--per-class/--no-per-class", default=True, show_default=True, help="Also fit each true class.")
@click.option("--include-pilot", is_flag=True, help="Analyse pilot participants too.")
@click.option("--json", "as_json", is_flag=True)
@_user_errors
def thresholds(
    responses: Path,
    batch_dirs: Sequence[Path],
    studies: Sequence[str],
    out: Path,
    n_boot: int,
    level: float,
    seed: int,
    per_class: bool,
    include_pilot: bool,
    as_json: bool,
) -> None:
    """Detection thresholds of graded attacks: psychometric functions per method (and class) in mm of mean joint
    displacement, 50 % and 75 % thresholds with bootstrap intervals, the share of clips below the threshold that
    still fool the model, and a figure (thresholds.csv, imperceptible_and_effective.csv, thresholds.png/.svg,
    thresholds.json, thresholds.md in --out)."""
    from .readers import ANALYSIS_COLUMNS
    from .readers import attach_batches
    from .readers import dumps
    from .readers import load_batches
    from .readers import read_responses_frame
    from .thresholds import ThresholdSettings
    from .thresholds import analyse_thresholds
    from .thresholds import write_thresholds

    batches = load_batches(batch_dirs)
    if str(responses) == "-":
        df, source = _stdin_responses(ANALYSIS_COLUMNS), "standard input"
    else:
        df, source = read_responses_frame(responses), str(responses)
    if studies:
        missing = sorted(set(studies) - set(df["study"].astype(str).unique()))
        if missing:
            raise click.ClickException(f"{source}: no responses of study {', '.join(map(repr, missing))}")
        df = df[df["study"].astype(str).isin(studies)]
    df = attach_batches(df, batches, source)
    settings = ThresholdSettings(
        n_boot=n_boot, level=level, seed=seed, include_pilot=include_pilot, per_class=per_class
    )
    summary = write_thresholds(analyse_thresholds(df, batches, settings), out)
    if as_json:
        click.echo(dumps(summary))
        return
    click.echo(
        f"{summary['participants']} participants, {summary['graded_trials']} graded and "
        f"{summary['sensitivity_trials']} identical-pair trials"
    )
    eff = {r["method"]: r for r in summary["imperceptible_and_effective"]}
    for m, s in summary["methods"].items():
        lo, hi = s["t50_mm_interval"]
        e = eff[m]
        click.echo(
            f"{m}: 50 % detection at {s['t50_mm']:.3g} mm [{lo:.3g}, {hi:.3g}], 75 % at {s['t75_mm']:.3g} mm; "
            f"imperceptible and effective: {e['below_and_effective']} of {e['clips']} graded clips"
        )
    click.echo(f"wrote {', '.join(summary['files'])} in {out}")


@cli.command("simulate-thresholds")
@click.option("--batch", "batch_dir", type=click.Path(path_type=Path), required=True, help="A batch with levels.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Responses file (.csv or .json).")
@click.option("--participants", type=click.IntRange(1), default=20, show_default=True)
@click.option(
    "--threshold",
    "threshold_values",
    multiple=True,
    required=True,
    metavar="METHOD=MM",
    help="A method's true 50 % threshold in mm of mean joint displacement (repeat).",
)
@click.option("--procedure", type=click.Choice(["constant", "adaptive"]), default="constant", show_default=True)
@click.option("--trials", type=click.IntRange(2), default=100, show_default=True, help="Analysed trials each.")
@click.option("--sensitivity-share", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True)
@click.option("--sigma", type=click.FloatRange(0, min_open=True), default=0.3, show_default=True)
@click.option("--guess", type=click.FloatRange(0, 0.5), default=0.1, show_default=True)
@click.option("--lapse", type=click.FloatRange(0, 0.2), default=0.02, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_user_errors
def simulate_thresholds(
    batch_dir: Path,
    out: Path,
    participants: int,
    threshold_values: Sequence[str],
    procedure: str,
    trials: int,
    sensitivity_share: float,
    sigma: float,
    guess: float,
    lapse: float,
    seed: int,
) -> None:
    """Responses of simulated observers with known detection thresholds, for a batch with graded levels."""
    from stimuli.fileio import atomic_write_bytes
    from stimuli.responses import rows_to_csv
    from stimuli.responses import rows_to_json

    from .readers import load_batches
    from .thresholds import parse_thresholds
    from .thresholds import simulate_threshold_study

    rows = simulate_threshold_study(
        load_batches([batch_dir]),
        participants,
        parse_thresholds(threshold_values),
        sigma=sigma,
        guess=guess,
        lapse=lapse,
        trials=trials,
        sensitivity_share=sensitivity_share,
        procedure=procedure,
        seed=seed,
    )
    text = rows_to_json(rows) if out.suffix == ".json" else rows_to_csv(rows)
    atomic_write_bytes(out, text.encode())
    click.echo(f"wrote {len(rows)} rows of {participants} simulated participants ({procedure}) to {out}")


def main() -> None:  # pragma: no cover
    cli(prog_name="analysis")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
