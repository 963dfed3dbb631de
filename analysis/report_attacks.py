"""The attack sections of the report: Tables 1-3 and 4, Fig. 2 (confusion of attacked labels),
Fig. 4 (joint correlations) and Fig. 7 (per-joint deviation, SMART vs l2).

From attack result files when given, else from the stimulus batch (its manifest and motions).
"""

from __future__ import annotations

from typing import Any
from typing import Sequence

import pandas as pd

from stimuli.attack_results import AttackRun
from stimuli.attack_results import TransferRun

from . import attacks
from . import figures
from . import paper
from .document import Fig
from .document import Section
from .document import Table
from .perceptual import Options
from .readers import Batches

__all__ = ["attack_sections"]


def _select_runs(runs: Sequence[AttackRun], limit: int = 4) -> list[AttackRun]:
    smart = [r for r in runs if r.loss == "smart"] or list(runs)
    smart.sort(key=lambda r: (paper.paper_strategy(r.label) != "AB", r.path.name))
    return smart[:limit]


def attack_sections(
    runs: Sequence[AttackRun], transfers: Sequence[TransferRun], batches: Batches, df: pd.DataFrame, opts: Options
) -> tuple[list[Section], dict[str, Any]]:
    summary: dict[str, Any] = {}
    out = []
    # Tables 1-3
    s = Section("Attack success (Tables 1-3)")
    if runs:
        tab = attacks.success_table(runs, opts.level)
        tab["label"] = (
            tab["model"]
            + " "
            + tab["dataset"]
            + " "
            + tab["strategy"]
            + " "
            + tab["loss"]
            + tab["threat_model"].map(lambda t: "" if t == "canonical" else f" ({t})")
        )
        s.text.append(
            "Success rate = successful / attacked clips (only clips the model recognised are attacked). "
            "Robust success: the successes whose adversarial clip, passed through the dataset's own "
            "preprocessing again (re-tied, re-faced where the dataset faces, re-centred), still fools the "
            "model. Threat model canonical: the model was attacked through its own preprocessing, so "
            "robust success equals success; raw: the paper's setting (the network on unpreprocessed "
            "input), where the two can differ. Cells: success / robust success (paper), in %; the "
            "paper's numbers (SMART loss, its raw setting) stand beside raw runs only."
        )
        for tm in ("canonical", "raw"):
            for name, strategies in attacks.TABLES.items():
                lay = attacks.success_layout(tab, strategies, threat_model=tm)
                if not lay.empty:
                    key = name if tm == "canonical" else f"{name}_raw"
                    s.tables.append(
                        Table(
                            key,
                            f"{name.replace('table', 'Table ')}: success of "
                            f"{'/'.join(strategies)}, {tm} threat model (success / robust (paper), %)",
                            lay,
                            lay,
                        )
                    )
        why = tab.loc[tab["no_paper_figure_because"] != "", ["file", "no_paper_figure_because"]]
        if len(why):
            s.text.append(
                "No paper figure beside "
                + "; ".join(f"{f} ({w})" for f, w in zip(why["file"], why["no_paper_figure_because"]))
                + "."
            )
        s.tables.append(Table("attack_success", "Every attack run", tab.drop(columns="label")))
        s.figures.append(Fig("attack_success", "Success per run", figures.plot_success(tab).figure))
        summary["runs"] = tab.drop(columns="label").to_dict("records")
    else:
        tab = attacks.batch_success(batches.variants, batches.items, opts.level)
        s.text.append(
            "No attack result files: success and robust success of the batch's attacked variants from "
            "its manifest (the target model's verdict on each stimulus, and on it re-preprocessed by the "
            "dataset's pipeline), with the threat model and the mean perceptual metrics."
        )
        s.tables.append(Table("batch_success", "Attack success per variant in the stimulus batch", tab))
        summary["batch_success"] = tab.to_dict("records")
    out.append(s)
    # Table 4
    s = Section("Black-box transfer (Table 4)")
    if transfers:
        tt = attacks.transfer_table(transfers)
        lay = attacks.transfer_layout(tt)
        s.text.append(
            "Rows surrogate, columns target: of the surrogate's successful adversarial clips whose "
            "original the target recognises, the share that fool the target, then the share that fool it "
            "after its dataset's preprocessing (robust); diagonal: white-box. Threat model: "
            + ", ".join(sorted(set(tt["threat_model"])))
            + ". "
            "Paper numbers (NTU, SMART loss, raw threat model) in brackets, beside raw runs only."
        )
        s.tables.append(Table("table4", "Table 4: transfer success (%)", lay, lay))
        s.tables.append(Table("transfer", "Every transfer cell", tt))
        summary["transfer"] = tt.to_dict("records")
    else:
        s.text.append(
            "No transfer summaries given (`attack-gen transfer` writes transfer.<label>.<loss>.json; pass "
            "it with --attacks). The paper's Table 4 (NTU, AB (AB5)):"
        )
        pt = pd.DataFrame(
            [
                {"surrogate": s_, "target": t_, "strategy": st, "paper %": v}
                for (s_, t_, st), v in paper.TRANSFER.items()
            ]
        )
        s.tables.append(Table("table4_paper", "The paper's Table 4", pt))
    out.append(s)
    # Fig. 2, 4, 7
    s2 = Section("Confusion of attacked labels (Fig. 2)")
    s4 = Section("Joint correlations (Fig. 4)")
    s7 = Section("Per-joint deviation, SMART vs l2 (Fig. 7)")
    if runs:
        n_corr = 0
        for r in _select_runs(runs):
            tag = f"{paper.display_model(r.model)} {paper.paper_dataset(r.dataset) or r.dataset} {r.label} {r.loss}"
            slug = _slug(tag)
            ok = r.status == "success"
            if ok.sum() == 0:
                s2.text.append(f"{tag}: no successful attack.")
                continue
            cm = attacks.confusion(r.true_label[ok], r.final_label[ok], r.class_names or None)
            s2.tables.append(
                Table(f"confusion_{slug}", f"{tag}: row-normalised confusion of attacked labels", cm.reset_index())
            )
            s2.figures.append(
                Fig(
                    f"confusion_{slug}",
                    f"{tag} ({int(ok.sum())} successful clips)",
                    figures.plot_confusion(cm, title=tag).figure,
                )
            )
            if ok.sum() >= 3 and n_corr < 2:  # the paper shows two settings
                D, S, A = attacks.clip_summaries(r.original[ok], r.adversarial[ok], r.fps)
                _add_corr(s4, attacks.joint_correlations(D, S, A), slug, f"{tag} ({int(ok.sum())} clips)")
                n_corr += 1
            elif ok.sum() < 3:
                s4.text.append(f"{tag}: fewer than 3 successful clips, no correlations.")
        pairs = _smart_l2_runs(runs)
        for key, (rs, rl) in pairs.items():
            ok_s, ok_l = rs.status == "success", rl.status == "success"
            dev = attacks.joint_deviation(
                {"smart": (rs.original[ok_s], rs.adversarial[ok_s]), "l2": (rl.original[ok_l], rl.adversarial[ok_l])}
            )
            _add_dev(s7, dev, _slug(key), f"{key}: successful clips of each run")
        if not pairs:
            s7.text.append("Needs a SMART and an l2 result of the same model, dataset and strategy.")
    else:
        _batch_figures(batches, df, s2, s4, s7)
    for sec in (s2, s4, s7):
        if sec.empty and not sec.text:
            sec.text.append("Not available from the inputs given.")
    out += [s2, s4, s7]
    return out, summary


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-" else "_" for c in text.lower()).strip("_")


def _smart_l2_runs(runs: Sequence[AttackRun]) -> dict[str, tuple[AttackRun, AttackRun]]:
    by = {}
    for r in runs:
        by[(paper.display_model(r.model), r.dataset, r.label, r.loss)] = r
    out = {}
    for (m, d, lab, loss), r in by.items():
        if loss == "smart" and (m, d, lab, "l2") in by:
            out[f"{m} {paper.paper_dataset(d) or d} {lab}"] = (r, by[(m, d, lab, "l2")])
    return out


def _add_corr(sec: Section, maps: dict[str, pd.DataFrame], slug: str, tag: str) -> None:
    for kind, m in maps.items():
        sec.tables.append(
            Table(f"joint_corr_{kind}_{slug}", f"{tag}: correlation of joint displacement with {kind}", m.reset_index())
        )
    sec.figures.append(
        Fig(
            f"joint_corr_{slug}",
            f"{tag}: correlations of joint displacement with displacement, "
            "speed and acceleration (rows: the displaced joint)",
            figures.joint_maps_figure(maps, title=tag),
        )
    )


def _add_dev(sec: Section, dev: pd.DataFrame, slug: str, tag: str) -> None:
    sec.tables.append(Table(f"joint_deviation_{slug}", f"{tag}: per-joint deviation (m)", dev))
    sec.figures.append(
        Fig(
            f"joint_deviation_{slug}",
            f"{tag}: mean (top) and standard deviation (bottom) of the joint-wise deviation",
            figures.joint_deviation_figure(dev, title=tag),
        )
    )


def _batch_figures(batches: Batches, df: pd.DataFrame, s2: Section, s4: Section, s7: Section) -> None:
    """Fig. 2, 4 and 7 from the batch's own motions and labels (no attack result files given)."""
    v = batches.variants
    it = batches.items.set_index(["batch_id", "item_id"])
    sm = v[(v["variant"] == "smart") & (v["role"] == "attack")]
    if sm.empty:
        for sec in (s2, s4, s7):
            sec.text.append("The batch has no 'smart' variant.")
        return
    ok = sm[sm["success"].astype(bool)]
    if len(ok):
        true = it.loc[list(zip(ok["batch_id"], ok["item_id"])), "true_label"].astype(str).to_numpy()
        cm = attacks.confusion(true, ok["final_label"].astype(str).to_numpy())
        s2.text.append(
            f"From the stimulus batch: true label against the target model's label for the SMART variant "
            f"of the {len(ok)} items it fooled."
        )
        s2.tables.append(
            Table("confusion_batch", "Row-normalised confusion of attacked labels (batch)", cm.reset_index())
        )
        s2.figures.append(
            Fig(
                "confusion_batch",
                "Confusion of attacked labels (stimulus batch, SMART)",
                figures.plot_confusion(cm, title="stimulus batch, SMART").figure,
            )
        )
    else:
        s2.text.append("The SMART variant fooled the model on no item of the batch.")
    keys = list(zip(sm["batch_id"], sm["item_id"]))
    orig = [batches.canonical_motion(b, i, "original") for b, i in keys]
    adv = [batches.canonical_motion(b, i, "smart") for b, i in keys]
    fps = [float(it.loc[(b, i), "motion_fps"]) for b, i in keys]
    if len(keys) >= 3:
        D, S, A = attacks.clip_summaries(orig, adv, fps)
        s4.text.append(f"From the stimulus batch: the SMART variant of {len(keys)} items (few clips: noisy).")
        _add_corr(s4, attacks.joint_correlations(D, S, A), "batch", "stimulus batch, SMART")
    else:
        s4.text.append(f"Only {len(keys)} items in the batch: correlations need at least 3.")
    if "l2" not in set(v["variant"]):
        s7.text.append("The batch has no 'l2' variant.")
        return
    chosen = _smart_over_l2_items(df)
    sel = [k for k in keys if f"{k[0]}\x1f{k[1]}" in chosen] if chosen else keys
    s7.text.append(
        f"From the stimulus batch: {len(sel)} items"
        + (
            " on which participants chose SMART over l2 at least once (the paper's selection)"
            if chosen
            else " (no SMART-vs-l2 choices in the responses)"
        )
        + "."
    )
    pairs = {
        m: (
            [batches.canonical_motion(b, i, "original") for b, i in sel],
            [batches.canonical_motion(b, i, m) for b, i in sel],
        )
        for m in ("smart", "l2")
    }
    _add_dev(s7, attacks.joint_deviation(pairs), "batch", "stimulus batch")


def _smart_over_l2_items(df: pd.DataFrame) -> set[str]:
    nat = df[(df["study_type"] == "naturalness") & df["preferred_variant"].notna()]
    if nat.empty:
        return set()
    left, right = nat["left_variant"].astype(str), nat["right_variant"].astype(str)
    pair = ((left == "smart") & (right == "l2")) | ((left == "l2") & (right == "smart"))
    won = pair & (nat["preferred_variant"].astype(str) == "smart")
    return set(nat.loc[won, "item_key"].astype(str))
