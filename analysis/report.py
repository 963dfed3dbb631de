"""Assemble the report: run every analysis and lay the results out as the paper does.

:func:`build_report` returns a :class:`analysis.document.Report` (sections of text,
tables and figures, a JSON summary and console lines); :func:`write_report` (from
:mod:`analysis.document`) writes it as ``report.html`` (self-contained), ``report.md``,
``tables/*.csv``, ``figures/*.png`` and ``summary.json``.
"""

from __future__ import annotations

import math
import platform
import re
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Sequence

import numpy as np
import pandas as pd

from stimuli.attack_results import AttackRun
from stimuli.attack_results import TransferRun

from . import __version__
from . import figures
from . import paper
from .document import MAX_ROWS
from .document import Fig
from .document import Report
from .document import Section
from .document import Table
from .document import ci
from .document import p_text
from .document import pct
from .document import pvalue
from .document import write_report
from .items import DESIGNS
from .items import items_sections
from .items import per_stimulus
from .perceptual import Options
from .perceptual import StudyResult
from .perceptual import counts
from .perceptual import deceitfulness
from .perceptual import indistinguishability
from .perceptual import naturalness
from .quality import data_quality
from .quality import quality_console
from .quality import quality_section
from .readers import Batches
from .report_attacks import attack_sections

__all__ = ["Table", "Fig", "Section", "Report", "build_report", "write_report", "MAX_ROWS"]


_NOT_COMPARABLE = (
    "no paper figure beside it: the paper's setting is the SMART variant on HDM05 and/or MHAD "
    "(2s-AGCN, AB), and these trials are not"
)


def _paper_note(share: Any) -> str:
    """The paper's share where the setting matches, else a short line saying why none is shown."""
    return f"paper {pct(share, 2)} %" if isinstance(share, float) and math.isfinite(share) else _NOT_COMPARABLE


def _h(h: Any, lo: Any, hi: Any) -> str:
    """Cohen's h with its interval, ``"+0.41 [+0.12, +0.70]"`` (empty when not finite)."""
    vals = [float(v) for v in (h, lo, hi)]
    if not math.isfinite(vals[0]):
        return ""
    iv = f" [{vals[1]:+.2f}, {vals[2]:+.2f}]" if all(math.isfinite(v) for v in vals[1:]) else ""
    return f"{vals[0]:+.2f}{iv}"


def _group(r: Any) -> str:
    return "overall" if r.breakdown == "overall" else f"{r.breakdown} = {r.level}"


def _lv(opts: Options) -> str:
    return f"{100 * opts.level:g}"


def _share_display(t: pd.DataFrame, what: str, lv: str) -> pd.DataFrame:
    rows = []
    for r in t.itertuples():
        rows.append(
            {
                "subset": r.subset,
                "group": _group(r),
                "participants": r.participants,
                "clips": r.clips,
                "trials": r.trials,
                f"{what} %": pct(r.share),
                f"{lv} % CI (two-way bootstrap)": ci(r.boot_low, r.boot_high),
                "Wilson": ci(r.wilson_low, r.wilson_high),
                "Clopper-Pearson": ci(r.cp_low, r.cp_high),
                "p (exact, vs 50 %)": pvalue(r.p_value),
                "Cohen's h vs 50 %": _h(r.cohens_h, r.h_low, r.h_high),
                "paper %": pct(r.paper, 2),
            }
        )
    return pd.DataFrame(rows)


def _share_phrase(
    share: Any, n: int, participants: Any, boot: Sequence[Any], wilson: Sequence[Any], lv: str, what: str = "trials"
) -> str:
    """``"91.0 % of 600 trials (two-way bootstrap 95 % CI [..]; Wilson [..])"``, saying so when it cannot be formed."""
    if not n:
        return f"no share: 0 analysed {what} (no analysed participant)"
    if ci(*boot):
        interval = f"two-way bootstrap {lv} % CI {ci(*boot)}; Wilson {ci(*wilson)}"
    else:
        interval = (
            f"{participants or 0} participant: no participant-level interval can be formed; Wilson "
            f"{ci(*wilson)}, which treats trials as independent"
        )
    return f"{pct(share)} % of {n} {what} ({interval})"


def _flat(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested mapping as (dotted key, readable value) rows; lists joined with commas."""
    out: list[tuple[str, str]] = []
    for k, v in dict(d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flat(v, key + ".") or [(key, "")]
        elif isinstance(v, (list, tuple)):
            out.append((key, ", ".join(map(str, v))))
        else:
            out.append((key, "" if v is None else str(v)))
    return out


def _slug(text: Any) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_").lower() or "batch"


def _inputs_section(
    inputs: dict[str, Any], batches: Batches, opts: Options, runs: Sequence[AttackRun], transfers: Sequence[TransferRun]
) -> Section:
    s = Section("Inputs")
    s.text.append(
        f"Responses: {inputs.get('responses')} ({inputs.get('rows')} rows; "
        + ", ".join(f"{k}: {v}" for k, v in inputs.get("study_types", {}).items())
        + ")."
    )
    for bid, b in batches.batches.items():
        prov = b.provenance
        s.text.append(
            f"Stimulus batch {bid} ({batches.roots[bid]}): {len(b.items)} items, variants "
            f"{', '.join(b.variant_names)}; dataset {prov.dataset.get('name')!r}, model "
            f"{prov.model.get('name') or prov.model.get('model')!r}; its settings in the table below."
        )
        rows = [
            {"part": part, "setting": k, "value": v}
            for part, d in (("dataset", prov.dataset), ("model", prov.model), ("attack", prov.attack))
            for k, v in _flat(d)
        ]
        s.tables.append(
            Table(
                f"batch_{_slug(bid)}_settings", f"Batch {bid}: dataset, model and attack settings", pd.DataFrame(rows)
            )
        )
    if runs or transfers:
        s.text.append(
            f"Attack files: {len(runs)} result(s) ({', '.join(r.path.name for r in runs) or '-'}), "
            f"{len(transfers)} transfer summar{'y' if len(transfers) == 1 else 'ies'} "
            f"({', '.join(t.path.name for t in transfers) or '-'})."
        )
    else:
        s.text.append("No attack result files given (--attacks): the attack sections use the stimulus batch.")
    s.text.append(
        f"Settings: {opts.n_boot} bootstrap replicates (seed {opts.seed}), {_lv(opts)} % "
        f"intervals, sensitivity screen {opts.sensitivity_threshold:.2f}, positive-control screen "
        f"{opts.control_threshold:.2f}, mixed models on at most {opts.glmm_max_participants} participants."
    )
    if inputs.get("preregistration"):
        s.text.append(inputs["preregistration"]["text"])
    return s


def _counts_section(res: StudyResult) -> Section:
    s = Section("Participants and trials")
    s.text.append(
        "Counts first. recruited: participants in the export; started: with at least one answered, "
        "valid, non-practice trial; completed: reached the end; excluded: by the server's screening "
        "(data kept); analysed: completed and not excluded."
    )
    s.tables.append(Table("counts", "Participants per study", res.tables["counts"]))
    ex = res.tables["exclusions"]
    s.tables.append(Table("exclusions", "Exclusions by reason (numbers in the reason replaced by #)", ex))
    if ex.empty:
        s.text.append("No participant was excluded.")
    s.tables.append(
        Table(
            "trials",
            "Trials per study: practice, invalid (playback failed), repeated attempts, "
            "analysable (not practice, valid, answered), analysed (of analysed participants)",
            res.tables["trials"],
        )
    )
    return s


def _deceit_section(res: StudyResult, opts: Options, classes: pd.DataFrame | None = None) -> Section:
    s = Section("Deceitfulness")
    if not res.tables:
        s.text += res.notes or ["No deceitfulness responses."]
        return s
    rates = res.tables["deceitfulness_rates"]
    o = rates[(rates["subset"] == "analysed") & (rates["breakdown"] == "overall")]
    if len(o):
        r = o.iloc[0]
        phrase = _share_phrase(
            r.share, int(r.trials), r.participants, (r.boot_low, r.boot_high), (r.wilson_low, r.wilson_high), _lv(opts)
        )
        s.text.append(
            f"Participants chose the ground-truth label in {phrase}"
            + (f"; exact binomial test against 50 %: {p_text(r.p_value)}" if r.trials else "")
            + (f"; paper: {pct(r.paper, 2)} %." if np.isfinite(r.paper) else f"; {_NOT_COMPARABLE}.")
        )
    prior = res.tables.get("deceitfulness_label_prior")
    if prior is not None and len(prior) and np.isfinite(prior["accuracy"]).any():
        p = {r.frequencies: r.accuracy for r in prior.itertuples()}
        s.text.append(
            f"Label-prior baseline: ignoring the motion and picking the label that is more often the true one "
            f"would be right in {pct(p['pooled'])} % of these trials (label frequencies over all trials), "
            f"{pct(p['within participant'])} % (over each participant's own trials); chance is 50 %. The "
            "share above is evidence about the motion only as far as it exceeds this."
            + "".join(
                f" Cohen's h of the share against the {r.frequencies} baseline: {_h(r.cohens_h, r.h_low, r.h_high)}."
                for r in prior.itertuples()
                if "cohens_h" in prior and _h(r.cohens_h, r.h_low, r.h_high)
            )
            + " (h = 2 asin sqrt p - 2 asin sqrt p0: 0.2 small, 0.5 medium, 0.8 large; the interval is the share's"
            " two-way bootstrap interval mapped through h.)"
        )
        s.tables.append(Table("deceitfulness_label_prior", "Label-prior baseline", prior))
    s.text += res.notes
    s.tables.append(
        Table(
            "deceitfulness_rates",
            "Share choosing the true label",
            rates,
            _share_display(rates, "true label", _lv(opts)),
        )
    )
    s.figures.append(
        Fig(
            "deceitfulness_rates",
            "Share choosing the true label with intervals",
            figures.plot_shares(rates, title="Deceitfulness: true label chosen").figure,
        )
    )
    s.tables.append(
        Table(
            "deceitfulness_spread",
            "Spread of the share over participants and over clips",
            res.tables["deceitfulness_spread"],
        )
    )
    part = res.tables["deceitfulness_participants"]
    if classes is not None and len(classes):
        overall = (res.summary.get("overall") or {}).get("share")
        s.figures.append(
            Fig(
                "deceitfulness_classes",
                f"Share choosing the true label per true class ({_lv(opts)} % Wilson intervals; dashed: overall), "
                "and per analysed participant (one dot each)",
                figures.deceitfulness_figure(
                    classes.rename(columns={"class": "label"}),
                    part.loc[part["analysed"], "share"].dropna().to_numpy(float),
                    overall=overall,
                    title="Deceitfulness",
                    level=opts.level,
                ),
            )
        )
    else:
        s.figures.append(
            Fig(
                "deceitfulness_participants",
                "Per-participant share choosing the true label (analysed)",
                figures.plot_histogram(
                    part.loc[part["analysed"], "share"],
                    title="Deceitfulness per participant",
                    xlabel="share choosing the true label",
                ).figure,
            )
        )
    s.tables.append(Table("deceitfulness_participants", "Per participant", part))
    s.tables.append(
        Table(
            "deceitfulness_clips",
            "Per clip (analysed participants), lowest share first",
            res.tables["deceitfulness_clips"],
        )
    )
    if "deceitfulness_glmm" in res.tables:
        s.tables.append(
            Table(
                "deceitfulness_glmm",
                "Mixed-effects logistic model y ~ 1 + (1|participant) + (1|clip), Laplace fit: the intercept "
                f"(a typical participant on a typical clip) with its {_lv(opts)} % profile-likelihood interval, "
                "the random-effect SDs with Wald intervals on the log scale (column interval names the method)",
                res.tables["deceitfulness_glmm"],
            )
        )
    return s


def _nat_section(res: StudyResult, opts: Options) -> Section:
    s = Section("Naturalness")
    if not res.tables:
        s.text += res.notes or ["No naturalness responses."]
        return s
    sm = res.summary
    s.text.append(
        f"Bradley-Terry-Davidson order (analysed, overall): {' > '.join(sm.get('order_bt', []))}; "
        f"paper (Fig. 6): {' > '.join(paper.NATURALNESS_ORDER)}"
        f"{' (same order)' if sm.get('matches_paper') else ' (different order)'}."
    )
    for abl, v in sm.get("sign_tests", {}).items():
        iv = ci(*v["ci_bootstrap"]) or ci(*v["ci_wilson"])
        kind = "participant bootstrap" if ci(*v["ci_bootstrap"]) else "Wilson"
        s.text.append(
            f"SMART vs {abl}: SMART preferred in {pct(v['smart_share'])} % of decisive answers "
            f"({kind} {_lv(opts)} % CI {iv}; this share is the probability of superiority, P(SMART preferred | "
            f"decisive); Cohen's h vs 50 % {_h(v['cohens_h'], *v['cohens_h_ci'])}; sign test, Holm-adjusted "
            f"p = {pvalue(v['p_holm'])})."
        )
    s.text += res.notes
    T = res.tables

    def over(t: pd.DataFrame) -> pd.DataFrame:
        return t[(t["subset"] == "analysed") & (t["breakdown"] == "overall")]

    pref = T["naturalness_preference"]
    if len(over(pref)):
        s.figures.append(
            Fig(
                "naturalness_preference",
                "Normalised preference per method (Fig. 6): chosen / shown, "
                "normalised to sum to 100 % (analysed, overall)",
                figures.plot_preference(over(pref)).figure,
            )
        )
    s.tables.append(
        Table(
            "naturalness_preference",
            "Normalised preference per method (win rate = chosen / shown; "
            f"normalised = win rate / sum of win rates; ci_low, ci_high: participant-bootstrap {_lv(opts)} % "
            "interval of the normalised preference); paper_rank: Fig. 6's order",
            pref,
        )
    )
    bt = T["naturalness_bt"]
    if len(over(bt)):
        s.figures.append(
            Fig(
                "naturalness_bt",
                f"Bradley-Terry-Davidson log-strengths with cluster-bootstrap (participants) {_lv(opts)} % intervals",
                figures.plot_bt(over(bt)).figure,
            )
        )
    s.tables.append(
        Table(
            "naturalness_bt",
            "Bradley-Terry scores with ties (Davidson): log-strength (sum zero) "
            "with cluster-bootstrap interval, strength share, tie parameter nu",
            bt,
        )
    )
    s.tables.append(
        Table(
            "naturalness_sign_tests",
            "Sign tests SMART vs each ablation (decisive answers; Holm across ablations); share_smart_decisive is "
            f"the probability of superiority with Wilson and participant-bootstrap {_lv(opts)} % intervals; "
            "cohens_h against 50 %, its interval the bootstrap one mapped through h",
            T["naturalness_sign_tests"],
        )
    )
    pairs = T["naturalness_pairs"]
    if len(over(pairs)):
        s.figures.append(
            Fig(
                "naturalness_pairs",
                "Answers per pair of methods (analysed, overall)",
                figures.plot_pairs(over(pairs)).figure,
            )
        )
    s.tables.append(Table("naturalness_pairs", "Per pair of methods (a before b in the paper's method order)", pairs))
    s.tables.append(
        Table("naturalness_pairs_lr", "Per ordered pair as shown: left / right / can't tell", T["naturalness_pairs_lr"])
    )
    s.tables.append(
        Table(
            "naturalness_position",
            "Side bias: share of decisive answers choosing the left clip",
            T["naturalness_position"],
        )
    )
    return s


def _ind_section(res: StudyResult, opts: Options) -> Section:
    s = Section("Indistinguishability")
    if not res.tables:
        s.text += res.notes or ["No indistinguishability responses."]
        return s
    sm = res.summary
    sc = sm.get("screening", {})
    s.text.append(
        f"Screening: of {sc.get('completed')} completed participants the server excluded "
        f"{sc.get('server_excluded')}; recomputed here, {sc.get('fail_sensitivity')} fall below "
        f"{opts.sensitivity_threshold:.0%} sensitivity accuracy (the paper's rule) and "
        f"{sc.get('fail_control')} below {opts.control_threshold:.0%} positive-control hits; "
        f"{sc.get('always_unchanged')} answered 'unchanged' to everything "
        f"({sc.get('always_unchanged_passing_sensitivity')} of them pass the paper's screen)."
    )
    o = sm.get("overall")
    if o:
        phrase = _share_phrase(
            o["share"],
            int(o["n"]),
            o["participants"],
            o["ci_bootstrap"],
            o["ci_wilson"],
            _lv(opts),
            "perceivability trials",
        )
        s.text.append(
            f"Attacked clips judged unchanged: {phrase}; "
            + (
                f"{_paper_note(o['paper'])}, after screening (HDM05 {paper.INDISTINGUISHABILITY['HDM05']} %, "
                f"MHAD {paper.INDISTINGUISHABILITY['MHAD']} %)."
                if isinstance(o["paper"], float) and math.isfinite(o["paper"])
                else f"{_NOT_COMPARABLE}."
            )
        )
    w = sm.get("with_control_screen")
    if w:
        s.text.append(
            f"Again with positive controls used for screening: {pct(w['share'])} % "
            f"{ci(*w['ci_bootstrap'])} ({w['participants']} participants)."
        )
    d = sm.get("dprime")
    if d and not np.isfinite(d.get("pooled", math.nan)):
        s.text.append(
            "d' cannot be estimated: no analysed participant with both sensitivity and perceivability trials."
        )
    elif d:
        s.text.append(
            f"Pooled hit rate {pct(d['hit_rate'])} %, false-alarm rate {pct(d['false_alarm_rate'])} %, "
            f"d' = {d['pooled']:.2f} (log-linear correction; cluster bootstrap {d['ci'][0]:.2f} to "
            f"{d['ci'][1]:.2f}); positive-control hit rate {pct(d['control_hit_rate'])} %. A yes/no d'; "
            "the same-different task's own models give larger values (Macmillan & Creelman 2005)."
        )
    s.text += res.notes
    T = res.tables
    part = T["indistinguishability_participants"]
    s.figures.append(
        Fig(
            "indistinguishability_sensitivity",
            "Sensitivity accuracy per participant (completed); dashed: the paper's 80 % screen",
            figures.plot_histogram(
                part.loc[part["completed"], "sensitivity_accuracy"],
                title="Sensitivity accuracy",
                xlabel="accuracy on original | original",
                threshold=opts.sensitivity_threshold,
            ).figure,
        )
    )
    s.figures.append(
        Fig(
            "indistinguishability_hit_fa",
            "Hit and false-alarm rates per participant",
            figures.plot_hit_fa(part[part["completed"]]).figure,
        )
    )
    s.tables.append(
        Table(
            "indistinguishability_participants",
            "Per participant: sensitivity accuracy, hits, positive controls, d' (log-linear), the screens",
            part,
        )
    )
    rates = T["indistinguishability_rates"]
    s.tables.append(
        Table(
            "indistinguishability_rates",
            "Share of attacked (perceivability) trials judged unchanged",
            rates,
            _share_display(rates, "unchanged", _lv(opts)),
        )
    )
    s.figures.append(
        Fig(
            "indistinguishability_rates",
            "Share of attacked trials judged unchanged",
            figures.plot_shares(rates, title="Attacked judged unchanged").figure,
        )
    )
    s.tables.append(
        Table(
            "indistinguishability_dprime",
            "Hit and false-alarm rates, d' pooled (log-linear; cluster "
            "bootstrap interval) and per participant, positive controls",
            T["indistinguishability_dprime"],
        )
    )
    if "indistinguishability_glmm" in T:
        s.tables.append(
            Table(
                "indistinguishability_glmm",
                "Signal-detection mixed model (probit GLMM, Laplace fit): said_changed ~ signal + (1 + signal || "
                "participant) + (1 + signal || clip) on identical and attacked pairs; criterion = -intercept, d' = "
                f"the signal slope, each with its {_lv(opts)} % profile-likelihood interval; the spreads of criterion "
                "and d' over participants and clips (column interval names each row's method)",
                T["indistinguishability_glmm"],
            )
        )
    sb = sm.get("screening_bias")
    if sb:
        rows = sb["rows"]
        s.text.append(
            "What the sensitivity screen does to d' (a simulation of 20,000 participants per row at this study's "
            f"{sb['sensitivity_trials']} identical and {sb['perceivability_trials']} attacked pairs per participant, "
            f"screen {sb['threshold']:.0%}, criterion {sb['criterion']:.2f} and d' {sb['dprime']:.2f} pooled over "
            "every completed participant): the screen keeps participants whose false alarms came out low partly by "
            "chance, so among those kept the observed false-alarm rate understates the true one and the pooled d' "
            "can overstate d' (most with few identical pairs and a liberal criterion, when the screen bites). Here: "
            + "; ".join(
                f"criterion SD {r['criterion_sd']:.2f}: {r['pass_share']:.0%} pass, pooled d' of those passing "
                f"{r['pooled_passed']:.2f} against a true {r['true_dprime']:.2f} (bias {r['bias']:+.2f})"
                for r in rows
            )
            + "."
        )
        s.tables.append(
            Table(
                "indistinguishability_screening_bias",
                "Bias of d' from the sensitivity screen, simulated at this study's trial counts and threshold "
                "(one row per criterion spread over participants)",
                T["indistinguishability_screening_bias"],
            )
        )
    return s


def _methods_section() -> Section:
    s = Section("Methods")
    s.text += [
        "Analysable trials: not practice, playback valid, answered. Subsets: all participants; analysed "
        "(completed and not excluded by the server); for Indistinguishability also analysed with a positive-control "
        "hit rate of at least the control threshold. Breakdowns per dataset, model, strategy and shown variant where "
        "the responses hold two or more values (with one value the breakdown is the overall row; the Inputs section "
        "names it).",
        "Shares: Wilson score and Clopper-Pearson intervals treat trials as independent; the primary interval is a "
        "two-way (participants x clips) percentile bootstrap on per-cell sums (Owen 2007), which allows for both "
        "clusterings. Tests: exact two-sided binomial test against 50 %.",
        "Effect sizes: Cohen's h = 2 asin sqrt(p) - 2 asin sqrt(p0) for every share against its reference (50 %, "
        "and for deceitfulness the label-prior baseline), its interval the share's primary interval mapped through h "
        "(h is monotone in p); for preferences the share of decisive answers favouring SMART, which is the "
        "probability of superiority, with Wilson and participant-bootstrap intervals; normalised preferences with a "
        "participant-bootstrap interval.",
        "Mixed models (analysis/glmm.py), fitted by the Laplace approximation as lme4's glmer does: deceitfulness "
        "y ~ 1 + (1|participant) + (1|clip) (logit); indistinguishability the equal-variance signal-detection model "
        "said_changed ~ signal + (1 + signal || participant) + (1 + signal || clip) (probit; criterion = -intercept, "
        "d' = slope; independent effects, no correlations). Fixed effects get profile-likelihood intervals, whose "
        "coverage a simulation of 200 studies checks (tests/test_analysis_glmm.py); standard deviations get Wald "
        "intervals on the log scale, or the profile's upper bound when estimated at 0. The models describe a typical "
        "participant on a typical clip, which differs from the pooled share; they are reported beside the "
        "bootstrap. Fitted on the analysed participants (a seeded random subset above the cap).",
        "Naturalness: normalised preference per method = chosen / shown, normalised to sum to 100 % (the paper's "
        "Fig. 6). Bradley-Terry with ties (Davidson 1970) by maximum likelihood; intervals from a bootstrap over "
        "participants. Sign tests (exact binomial on decisive answers) SMART vs each ablation, Holm-adjusted.",
        "Indistinguishability: hit = 'changed' on original | attacked, false alarm = 'changed' on original | original; "
        "d' = z(H) - z(F) with the log-linear correction (H = (hits + 0.5) / (n + 1)), pooled over participants "
        "(cluster-bootstrap interval) and per participant. The screen on sensitivity alone passes a participant who "
        "always answers 'unchanged'; positive controls catch them. The screen selects on the false-alarm count, "
        "whose noise then biases d' upwards among those passing (more so with few identical pairs and a "
        "liberal criterion, when the screen bites); analysis/screening_bias.py simulates the size at the "
        "study's own trial counts, threshold and estimated criterion (table indistinguishability_screening_bias).",
        "The paper's numbers beside ours come from analysis/paper.py (SPEC §4) and are shown only where the setting "
        "matches (perceptual studies: the SMART variant on HDM05 and/or MHAD; attacks: the SMART loss, same model, "
        "dataset and strategy).",
    ]
    return s


def build_report(
    df: pd.DataFrame,
    batches: Batches,
    runs: Sequence[AttackRun] = (),
    transfers: Sequence[TransferRun] = (),
    opts: Options = Options(),
    inputs: dict[str, Any] | None = None,
) -> Report:
    """Run every analysis on ``df`` (responses attached to ``batches``) and the attack files."""
    from threadpoolctl import threadpool_limits

    from .readers import describe_inputs

    inputs = {"responses": "(a DataFrame)", **describe_inputs(df), **(inputs or {})}
    with threadpool_limits(limits=1, user_api="blas"):
        c = counts(df)
        dec = deceitfulness(df, opts)
        nat = naturalness(df, opts)
        ind = indistinguishability(df, opts)
        per = {st: per_stimulus(df, st, opts) for st in DESIGNS}
        qual = data_quality(df, opts)
        att_sections, att_summary = attack_sections(runs, transfers, batches, df, opts)
    sections = [
        _inputs_section(inputs, batches, opts, runs, transfers),
        _counts_section(c),
        _deceit_section(dec, opts, per["deceitfulness"].tables.get("deceitfulness_classes")),
        *items_sections(per["deceitfulness"], "deceitfulness", opts),
        _nat_section(nat, opts),
        *items_sections(per["naturalness"], "naturalness", opts),
        _ind_section(ind, opts),
        *items_sections(per["indistinguishability"], "indistinguishability", opts),
        quality_section(qual, opts),
        *att_sections,
        _methods_section(),
    ]
    summary = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": inputs,
        "counts": c.summary,
        "deceitfulness": dec.summary,
        "naturalness": nat.summary,
        "indistinguishability": ind.summary,
        "per_stimulus": {st: r.summary for st, r in per.items()},
        "data_quality": qual.summary,
        "attacks": att_summary,
        "notes": {"deceitfulness": dec.notes, "naturalness": nat.notes, "indistinguishability": ind.notes},
        "versions": _versions(),
    }
    console = _console(c, dec, nat, ind, att_summary) + quality_console(qual)
    graded = int(df["procedure"].isin(["constant", "adaptive"]).sum()) if "procedure" in df else 0
    if graded:  # the share above pools every level; the thresholds are the question such trials answer
        console.append(
            f"indistinguishability: {graded} trials of a threshold procedure (graded levels pooled above); their "
            "detection thresholds: analysis thresholds"
        )
    return Report("smart-study report", sections, summary, console)


def _versions() -> dict[str, str]:
    import matplotlib
    import scipy
    import statsmodels

    return {
        "analysis": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
        "matplotlib": matplotlib.__version__,
    }


def _console(c: StudyResult, dec: StudyResult, nat: StudyResult, ind: StudyResult, att: dict[str, Any]) -> list[str]:
    lines = []
    for key, v in c.summary.items():
        st, study = key.split(":", 1)
        lines.append(
            f"{st} ({study}): {v['recruited']} recruited, {v['started']} started, {v['completed']} completed, "
            f"{v['excluded']} excluded, {v['analysed']} analysed"
        )
    o = dec.summary.get("overall")
    if o and not o["n"]:
        lines.append("deceitfulness: 0 analysed participants: no share")
    elif o:
        base = dec.summary.get("label_prior_baseline", {}).get("pooled")
        lines.append(
            f"deceitfulness: true label chosen in {pct(o['share'])} % "
            f"{ci(*o['ci_bootstrap']) or '(no participant-level interval: 1 participant)'} of {o['n']} "
            f"trials ({_paper_note(o['paper'])}; label-prior baseline "
            f"{pct(base)} %)"
        )
    if nat.summary.get("order_bt"):
        lines.append(
            f"naturalness: {' > '.join(nat.summary['order_bt'])} (Bradley-Terry); paper "
            f"{' > '.join(paper.NATURALNESS_ORDER)}"
        )
    elif nat.summary.get("no_order"):
        lines.append(f"naturalness: no Bradley-Terry order ({nat.summary['no_order']})")
    o = ind.summary.get("overall")
    if not o and ind.tables:
        lines.append("indistinguishability: 0 analysed participants: no share, no d'")
    elif o and not o["n"]:
        lines.append("indistinguishability: 0 analysed participants: no share, no d'")
    elif o:
        d = ind.summary.get("dprime", {})
        w = ind.summary.get("with_control_screen")
        dp = d.get("pooled", float("nan"))
        lines.append(
            f"indistinguishability: attacked judged unchanged in {pct(o['share'])} % "
            f"{ci(*o['ci_bootstrap']) or '(no participant-level interval: 1 participant)'} "
            f"({_paper_note(o['paper'])}); "
            + (f"d' {dp:.2f}" if np.isfinite(dp) else "d' cannot be estimated")
            + (f"; with control screen {pct(w['share'])} %" if w else "")
        )
    if att.get("runs"):
        lines.append(
            f"attacks: {len(att['runs'])} result file(s)"
            + (
                f", {len({r['file'] for r in att.get('transfer', [])})} transfer summary file(s)"
                if att.get("transfer")
                else ""
            )
        )
    elif att.get("batch_success"):
        lines.append(
            "attacks: "
            + ", ".join(f"{r['variant']} {pct(r['rate'])} %" for r in att["batch_success"])
            + " success in the batch"
        )
    return lines
