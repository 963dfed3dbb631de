"""A preregistration bundle: what was planned, frozen before data come in, with one digest to quote.

``analysis prereg --study study.toml --batch DIR --out prereg/`` writes into a new folder:

* ``study.toml`` - the study file, byte for byte (every setting of the study);
* ``batch.json`` - the stimulus batch: its id, the SHA-256 of its manifest, its items and variants;
* ``plan.json`` - the analysis plan: the hypotheses the study's designs test (with their null values,
  tests, one-sided level and corrections), the screening thresholds and the exclusion rules, the
  analysis settings the report must use, and the planned sample;
* ``power.json`` - an exact-binomial power analysis of each hypothesis at the planned number of
  observations, for the effect assumed in the plan (participants are treated as independent
  observations: no design effect; a simulation of the mixed model is the better tool);
* ``code.json`` - the code version (package version, git commit and whether the tree had changes);
* ``power_simulated.json`` - only with ``--power FILE``: the ``power.json`` that ``analysis power`` wrote
  (a simulation of the report's own tests), byte for byte; its table is also in ``plan.json``
  (``simulated_power``);
* ``SHA256SUMS`` - the hash of every file above, and ``DIGEST`` - the SHA-256 of ``SHA256SUMS``.

Nothing in it depends on the time or the machine, so the same inputs give the same digest; any
planned setting changed (in the study file, the batch, or the plan's options) gives another.
``analysis report --prereg DIR`` later checks the bundle is intact and says whether the data
match it: the same batch (manifest hash), the same study settings (from the JSON export's study
files), and the same analysis settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from stimuli.errors import DataError
from stimuli.fileio import file_sha256
from stimuli.screening import CONTROL_HIT_THRESHOLD
from stimuli.screening import SENSITIVITY_THRESHOLD

from . import __version__

__all__ = ["PlanOptions", "write_bundle", "check_bundle", "read_study_file", "FILES"]

FILES = ("study.toml", "batch.json", "plan.json", "power.json", "code.json")
SIMULATED_POWER = "power_simulated.json"
STUDY_FORMAT = "smart-study-study"
ABLATIONS = ("l2", "l2-acc", "l2-bone")


@dataclass(frozen=True)
class PlanOptions:
    """The planned analysis: one-sided level, interval level, the assumed effects, and the sample."""

    alpha: float = 0.05
    level: float = 0.95
    unchanged_level: float = 0.5
    """Indistinguishability: SMART is 'judged unchanged' when this share is exceeded."""
    assumed_deceit: float = 0.6
    assumed_preference: float = 0.6
    assumed_unchanged: float = 0.6
    participants: int | None = None
    """Planned participants per study (default: the study file's target)."""
    include_pilot: bool = False


def read_study_file(path: Path, text: str | None = None) -> dict[str, Any]:
    """The study file's settings as a dict (checked for the format; errors name the file)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8") if text is None else text)
    except FileNotFoundError:
        raise DataError(f"{path}: study file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a TOML study file ({e})") from None
    if doc.get("format") != STUDY_FORMAT:
        raise DataError(f"{path}: not a smart-study study file (format {doc.get('format')!r})")
    for key, kind in (("slug", str), ("batch", str), ("study_type", str), ("blocks", list)):
        if not isinstance(doc.get(key), kind):
            raise DataError(f"{path}: {key} must be a {kind.__name__} (export it with export-study)")
    return doc


def _code_version() -> dict[str, Any]:
    here = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {"package": "smart-study", "version": __version__, "commit": None, "changed": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            info["commit"] = commit.stdout.strip()
            status = subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            info["changed"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _hypotheses(study: dict[str, Any], opts: PlanOptions) -> list[dict[str, Any]]:
    settings = study.get("settings", {})
    n = opts.participants or settings.get("target_participants")
    if not n:
        raise DataError("the study file has no target_participants: give --participants (the planned sample)")
    out = []
    for i, b in enumerate(study["blocks"]):
        kind, trials = b.get("study_type"), int(b.get("trials", 0))
        where = f"block {i + 1} ({kind})"
        if kind == "deceitfulness":
            out.append(
                {
                    "id": f"H{len(out) + 1}",
                    "block": i + 1,
                    "claim": "attacked clips are given the attacked (adversarial) label more often than chance",
                    "measure": "share of analysed trials answered with the adversarial label",
                    "null": 0.5,
                    "test": "exact binomial, one-sided (greater)",
                    "assumed": opts.assumed_deceit,
                    "observations": n * trials,
                    "where": where,
                }
            )
        elif kind == "naturalness":
            for ab in ABLATIONS:
                out.append(
                    {
                        "id": f"H{len(out) + 1}",
                        "block": i + 1,
                        "claim": f"SMART is judged more natural than {ab}",
                        "measure": f"share of SMART-vs-{ab} pairs where SMART is chosen (ties split)",
                        "null": 0.5,
                        "test": "sign test, one-sided (greater); Holm correction over the ablations",
                        "assumed": opts.assumed_preference,
                        "observations": n * trials // len(ABLATIONS),
                        "where": where,
                    }
                )
        elif kind == "indistinguishability":
            analysed = 1 - float(b.get("sensitivity_share", 0)) - float(b.get("control_share", 0))
            out.append(
                {
                    "id": f"H{len(out) + 1}",
                    "block": i + 1,
                    "claim": f"SMART clips are judged unchanged in more than {opts.unchanged_level:g} of pairs",
                    "measure": "share of original | SMART pairs answered unchanged",
                    "null": opts.unchanged_level,
                    "test": "exact binomial, one-sided (greater); d' reported beside it",
                    "assumed": opts.assumed_unchanged,
                    "observations": int(n * trials * analysed),
                    "where": where,
                }
            )
    if not out:
        raise DataError("the study file has no block of a known design")
    return out


def _power(h: dict[str, Any], alpha: float) -> dict[str, Any]:
    """Exact one-sided binomial power at the planned observations, and the observations for 80 % power."""

    def at(n: int) -> tuple[int, float]:
        k = int(stats.binom.isf(alpha, n, h["null"])) + 1  # smallest k with P(X >= k | null) <= alpha
        return k, float(stats.binom.sf(k - 1, n, h["assumed"]))

    n = int(h["observations"])
    k, power = at(n) if n > 0 else (0, 0.0)
    need = None
    if h["assumed"] > h["null"]:
        lo = 1
        while at(lo)[1] < 0.8 and lo < 10_000_000:
            lo *= 2
        ns = np.arange(1, lo + 1)  # power is not monotone in n (the discrete test): the first n that reaches 80 %
        ks = stats.binom.isf(alpha, ns, h["null"]).astype(int) + 1
        need = int(ns[np.argmax(stats.binom.sf(ks - 1, ns, h["assumed"]) >= 0.8)])
    return {
        "id": h["id"],
        "observations": n,
        "critical_count": k,
        "power": round(power, 4),
        "observations_for_80_percent": need,
    }


def _plan(study: dict[str, Any], opts: PlanOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    settings = study.get("settings", {})
    hyps = _hypotheses(study, opts)
    naturalness = sum("Holm" in h["test"] for h in hyps)
    plan = {
        "format": "smart-study-plan",
        "version": 1,
        "study": study["slug"],
        "hypotheses": hyps,
        "alpha_one_sided": opts.alpha,
        "corrections": (
            f"Holm over the {naturalness} naturalness comparisons; the designs are separate families"
            if naturalness
            else "none (one test per design)"
        ),
        "intervals": f"{opts.level:g} Wilson and Clopper-Pearson per share; cluster bootstrap over participants",
        "thresholds": {
            "sensitivity_screen": settings.get("screening_threshold", SENSITIVITY_THRESHOLD),
            "positive_control_screen": settings.get("control_hit_threshold"),
        },
        "exclusions": [
            "participants below the sensitivity screen (accuracy on original | original pairs)",
            "participants below the positive-control screen, where the study sets one",
            "pilot participants" if not opts.include_pilot else "none for pilots (analysed: --include-pilot)",
            "practice trials, and trials whose clip failed to play (invalid)",
        ],
        "analysis_settings": {  # what analysis report must be run with
            "level": opts.level,
            "sensitivity_threshold": settings.get("screening_threshold", SENSITIVITY_THRESHOLD),
            "control_threshold": settings.get("control_hit_threshold") or CONTROL_HIT_THRESHOLD,
            "include_pilot": opts.include_pilot,
        },
        "sample": {"participants": opts.participants or settings.get("target_participants")},
    }
    power = {
        "method": "exact binomial, one-sided, participants as independent observations (no design effect)",
        "alpha": opts.alpha,
        "results": [_power(h, opts.alpha) for h in hyps],
    }
    return plan, power


def _flat(doc: Any, prefix: str = "") -> dict[str, Any]:
    """``{"settings.trials": 5, "blocks[1].plays": 2, ...}``: every value by its path."""
    if isinstance(doc, dict):
        return {k: v for key, val in doc.items() for k, v in _flat(val, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(doc, list):
        return {k: v for i, val in enumerate(doc) for k, v in _flat(val, f"{prefix}[{i + 1}]").items()}
    return {prefix: doc}


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _simulated_power(path: Path, batch_id: str, manifest_sha256: str) -> tuple[bytes, dict[str, Any]]:
    """The bytes of an ``analysis power`` result and its summary for the plan (table, settings, observer, batch)."""
    from .power import read_power

    doc = read_power(path)
    data = path.read_bytes()
    sim = doc.get("batches") or {}
    return data, {
        "file": SIMULATED_POWER,
        "sha256": hashlib.sha256(data).hexdigest(),
        "settings": doc.get("settings"),
        "observer": doc.get("observer"),
        "table": doc["table"],
        "simulated_on": sorted(sim),
        "same_batch": batch_id in sim and sim[batch_id].get("manifest_sha256") == manifest_sha256,
    }


def write_bundle(
    study_path: Path, batch: Any, batch_dir: Path, out: Path, opts: PlanOptions, power: Path | None = None
) -> dict[str, Any]:
    """Write the bundle into the new folder ``out`` (all or nothing); its digest and files.

    ``power``: a ``power.json`` written by ``analysis power``, copied in and its table put into the plan.
    """
    from stimuli.batch import MANIFEST

    study = read_study_file(study_path)
    if study["batch"] != batch.batch_id:
        raise DataError(
            f"{study_path}: the study names batch {study['batch']!r}, but {batch_dir} is {batch.batch_id!r}"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not empty (a bundle goes into a new folder)")
    plan, power_doc = _plan(study, opts)
    manifest = file_sha256(batch_dir / MANIFEST)
    simulated = None
    if power is not None:
        sim_bytes, simulated = _simulated_power(power, batch.batch_id, manifest)
        plan["simulated_power"] = simulated
    contents = {
        "study.toml": study_path.read_bytes(),
        "batch.json": _dump(
            {
                "batch_id": batch.batch_id,
                "manifest_sha256": manifest,
                "items": len(batch.items),
                "variants": list(batch.variant_names),
            }
        ),
        "plan.json": _dump(plan),
        "power.json": _dump(power_doc),
        "code.json": _dump(_code_version()),
    }
    names = FILES
    if simulated is not None:
        contents[SIMULATED_POWER] = sim_bytes
        names = (*FILES, SIMULATED_POWER)
    sums = "".join(f"{hashlib.sha256(contents[name]).hexdigest()}  {name}\n" for name in names)
    digest = "sha256:" + hashlib.sha256(sums.encode()).hexdigest()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prereg-", dir=out.parent))
    try:
        for name, data in contents.items():
            (tmp / name).write_bytes(data)
        (tmp / "SHA256SUMS").write_text(sums)
        (tmp / "DIGEST").write_text(digest + "\n")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    got = {"digest": digest, "out": str(out), "files": [*names, "SHA256SUMS", "DIGEST"], "power": power_doc["results"]}
    if simulated is not None:
        got["simulated_power"] = {k: simulated[k] for k in ("table", "same_batch", "simulated_on")}
    return got


def check_bundle(
    bundle: Path,
    manifest_hashes: dict[str, str],
    study_files: dict[str, str] | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Whether the data match the bundle: ``{"digest", "intact", "batch", "study", "plan", "matches", "text"}``.

    ``manifest_hashes``: batch id -> manifest SHA-256 of the batches read; ``study_files``: slug -> study file
    text from a JSON export (None for a CSV export: not checked); ``settings``: the report's analysis settings.
    """
    sums_path = bundle / "SHA256SUMS"
    if not sums_path.is_file():
        raise DataError(f"{bundle}: not a preregistration bundle (no SHA256SUMS)")
    sums = sums_path.read_text()
    digest = (bundle / "DIGEST").read_text().strip() if (bundle / "DIGEST").is_file() else None
    altered = [
        name
        for line in sums.splitlines()
        for want, name in [line.split("  ", 1)]
        if not (bundle / name).is_file() or file_sha256(bundle / name) != want
    ]
    intact = not altered and digest == "sha256:" + hashlib.sha256(sums.encode()).hexdigest()
    batch = json.loads((bundle / "batch.json").read_text())
    plan = json.loads((bundle / "plan.json").read_text())
    planned = read_study_file(bundle / "study.toml")
    got = manifest_hashes.get(batch["batch_id"])
    batch_ok = got == batch["manifest_sha256"]
    if study_files is None:
        study_ok: bool | None = None
        study_note = "not checked (a CSV export carries no study file: export as JSON)"
    elif planned["slug"] not in study_files:
        study_ok, study_note = False, f"DIFFER: no study {planned['slug']!r} in the responses"
    else:
        ran = _flat(read_study_file(Path(f"<export: {planned['slug']}>"), study_files[planned["slug"]]))
        want = _flat(planned)
        keys = sorted(k for k in set(ran) | set(want) if ran.get(k) != want.get(k))
        study_ok = not keys
        study_note = "as planned" if study_ok else "DIFFER: " + ", ".join(keys)
    wanted = plan["analysis_settings"]
    differ = sorted(
        k
        for k, v in wanted.items()
        if not (
            settings.get(k) == v
            or (isinstance(v, float) and isinstance(settings.get(k), float) and math.isclose(v, settings[k]))
        )
    )
    plan_ok = not differ
    matches = intact and batch_ok and plan_ok and study_ok is not False
    text = (
        f"Preregistration {digest}: bundle {'intact' if intact else 'ALTERED (' + ', '.join(altered) + ')'}; "
        f"batch {batch['batch_id']} {'matches' if batch_ok else 'DIFFERS (not the planned stimuli)'}; "
        f"study settings {study_note}; "
        f"analysis settings {'as planned' if plan_ok else 'DIFFER from the plan: ' + ', '.join(differ)}."
    )
    return {
        "digest": digest,
        "intact": intact,
        "batch": batch_ok,
        "study": study_ok,
        "plan": plan_ok,
        "plan_differences": differ,
        "matches": matches,
        "text": text,
    }
