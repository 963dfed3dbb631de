"""A study as one readable TOML file: every setting, so a study can be planned, reviewed, frozen and recreated.

``flask --app study_server export-study SLUG --out study.toml`` writes it;
``flask --app study_server create-study --from study.toml`` creates the same study from it.
The file names the study (slug, design), its batch (by id) and every setting of
:mod:`study_server.settings`, each with its label and help as a comment::

    format = "smart-study-study"
    version = 1
    slug = "hdm05-deceit"
    study_type = "deceitfulness"
    batch = "batch-0ac7abc347072b3e"

    [settings]
    screening_threshold = 0.8   # Screening: minimum sensitivity accuracy. ...
    ...

    [[blocks]]
    study_type = "deceitfulness"
    trials = 100
    ...

A setting left out takes its default (the paper's); a setting that is None is left out
(TOML has no null). The text is a pure function of the settings (no dates, keys in
declaration order), so the same study always gives the same bytes. Errors name the file,
the line and the setting: ``study.toml:14: blocks[1].trials must be an integer in
1..10000, got 0``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from stimuli.errors import SmartStudyError

from . import design
from .settings import BLOCK_SETTINGS
from .settings import STUDY_SETTINGS
from .settings import block_fields
from .settings import spec
from .settings import study_fields

__all__ = ["FORMAT", "VERSION", "StudyFile", "StudyFileError", "study_file_text", "read_study_file"]

FORMAT = "smart-study-study"
VERSION = 1
RUNTIME = ("status",)
"""Settings that are the study's state, not its plan: not in the file (a created study is open)."""


class StudyFileError(SmartStudyError, ValueError):
    """A study file cannot be read or names a bad setting (the message gives the file and line)."""


@dataclass(frozen=True)
class StudyFile:
    """What a study file says: ``create_study(slug, batch_id, study_type, **keywords)``."""

    slug: str
    study_type: str
    batch_id: str
    settings: dict[str, Any]
    blocks: list[dict[str, Any]]
    lines: dict[tuple[str, int | None, str], int]
    """``(section, block index or None, key) -> line``: where each key is written."""
    path: str = "study.toml"

    def keywords(self) -> dict[str, Any]:
        """``create_study``'s keywords: the settings, and the blocks (as keywords for a single design)."""
        if self.study_type == design.COMBINED:
            return {**self.settings, "blocks": [dict(b) for b in self.blocks]}
        (block,) = self.blocks
        return {**self.settings, **{k: v for k, v in block.items() if k != "study_type"}}

    def line_of(self, field: str | None, block: int | None) -> int | None:
        """The line of a setting named in an error (``block``: its block in a combined session)."""
        if field is None:
            return None
        if field in BLOCK_SETTINGS or field == "study_type" and block is not None:
            return self.lines.get(("blocks", block or 0, field)) or self.lines.get(("blocks", block or 0, ""))
        if field in STUDY_SETTINGS:
            return self.lines.get(("settings", None, field))
        return self.lines.get(("", None, "batch" if field == "batch" else field))

    def where(self, field: str | None, block: int | None) -> str:
        """``file:line: section.key`` (or as much as is known) for a message about ``field``."""
        line = self.line_of(field, block)
        if field in BLOCK_SETTINGS or (field == "study_type" and block is not None):
            key = f"blocks[{(block or 0) + 1}].{field}"
        elif field in STUDY_SETTINGS:
            key = f"settings.{field}"
        else:
            key = field or ""
        return f"{self.path}:{line}: {key}" if line else f"{self.path}: {key}"


def _value(v: Any) -> str:
    """One TOML value (strings quoted and escaped by tomli_w)."""
    if isinstance(v, tuple):
        v = list(v)
    return tomli_w.dumps({"v": v}).strip()[len("v = ") :]


def _comment(f: Any) -> str:
    s = spec(f)
    text = " ".join(filter(None, [f"{s.label[0].upper()}{s.label[1:]}.", s.help]))
    return f"# {text}"


def study_file_text(study: Any) -> str:
    """The study file of ``study`` (a :class:`study_server.models.Study`): every setting, one per line."""
    out = [
        f"# smart-study study file: every setting of study {study.slug!r}",
        "# (create the same study with: flask --app study_server create-study --from THIS_FILE --batch DIR)",
        f"format = {_value(FORMAT)}",
        f"version = {VERSION}",
        f"slug = {_value(study.slug)}",
        f"study_type = {_value(study.study_type)}",
        f"batch = {_value(study.batch.batch_id)}",
        "",
        "[settings]",
    ]
    for f in study_fields():
        if f.name in RUNTIME:
            continue
        value = getattr(study, f.name)
        out.append(_comment(f))
        out.append(f"{f.name} = {_value(value)}" if value is not None else f"# {f.name}: none")
    for block in study.blocks:
        out += ["", "[[blocks]]", f"study_type = {_value(block['study_type'])}"]
        for f in block_fields():
            value = block.get(f.name)
            out.append(_comment(f))
            out.append(f"{f.name} = {_value(value)}" if value is not None else f"# {f.name}: none")
    return "\n".join(out) + "\n"


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _key_lines(text: str) -> dict[tuple[str, int | None, str], int]:
    """Where each key is written: ``(section, block index, key) -> line`` (``key ""``: the block's header)."""
    lines: dict[tuple[str, int | None, str], int] = {}
    section, index, blocks = "", None, -1
    for n, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            section = m.group(2)
            if m.group(1) == "[[":
                blocks += 1 if section == "blocks" else 0
                index = blocks
                lines[(section, index, "")] = n
            else:
                index = None
            continue
        k = _KEY.match(line)
        if k:
            lines.setdefault((section, index, k.group(1)), n)
    return lines


def read_study_file(path: str | Path) -> StudyFile:
    """Read and check the structure of a study file (the settings' values are checked by ``create_study``,
    whose errors :meth:`StudyFile.where` places); :class:`StudyFileError` naming the line otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StudyFileError(f"{path}: cannot read the study file: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"^(.*) \(at line (\d+), column (\d+)\)$", str(e))
        where, msg = (f"{path}:{m.group(2)}", f"{m.group(1)} (column {m.group(3)})") if m else (str(path), str(e))
        raise StudyFileError(f"{where}: not valid TOML: {msg}") from None
    lines = _key_lines(text)

    def fail(section: str, index: int | None, key: str, message: str) -> StudyFileError:
        n = lines.get((section, index, key)) or lines.get((section, index, ""))
        return StudyFileError(f"{path}:{n}: {message}" if n else f"{path}: {message}")

    if data.get("format") != FORMAT:
        raise fail("", None, "format", f"format must be {FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != VERSION:
        raise fail("", None, "version", f"version must be {VERSION}, got {data.get('version')!r}")
    known = {"format", "version", "slug", "study_type", "batch", "settings", "blocks"}
    for key in data:
        if key not in known:
            raise fail("", None, key, f"unknown key {key!r} (expected {', '.join(sorted(known))})")
    for key in ("slug", "study_type", "batch"):
        if not isinstance(data.get(key), str):
            raise fail("", None, key, f"{key} must be a string, got {data.get(key)!r}")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise fail("", None, "settings", "settings must be a table ([settings])")
    for key in settings:
        if key not in STUDY_SETTINGS or key in RUNTIME:
            raise fail("settings", None, key, f"settings.{key}: unknown setting")
    blocks = data.get("blocks")
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) for b in blocks):
        raise fail("", None, "blocks", "blocks must be one or more [[blocks]] tables")
    for i, b in enumerate(blocks):
        for key in b:
            if key != "study_type" and key not in BLOCK_SETTINGS:
                raise fail("blocks", i, key, f"blocks[{i + 1}].{key}: unknown setting")
        if b.get("study_type") not in design.STUDY_TYPES:
            raise fail(
                "blocks",
                i,
                "study_type",
                f"blocks[{i + 1}].study_type must be one of {', '.join(design.STUDY_TYPES)}, "
                f"got {b.get('study_type')!r}",
            )
    study_type = data["study_type"]
    if study_type != design.COMBINED:
        if len(blocks) != 1:
            raise fail("blocks", 1, "", f"a {study_type} study has one [[blocks]] table, got {len(blocks)}")
        if blocks[0]["study_type"] != study_type:
            raise fail("blocks", 0, "study_type", f"blocks[1].study_type must be the study's, {study_type!r}")
    return StudyFile(
        slug=data["slug"],
        study_type=study_type,
        batch_id=data["batch"],
        settings=dict(settings),
        blocks=[dict(b) for b in blocks],
        lines=lines,
        path=str(path),
    )
