"""The report as a document (sections of text, tables and figures) and its writer.

:func:`write_report` writes a :class:`Report` into one folder:

* ``report.html``: self-contained (figures embedded as base64 PNG, no external files);
* ``report.md``: the same text and tables, figures linked from ``figures/``;
* ``tables/<name>.csv``: every table, complete (HTML and Markdown show at most
  ``MAX_ROWS`` rows of long tables);
* ``figures/<name>.png``: every figure;
* ``summary.json``: the headline numbers (what ``analysis report --json`` prints).
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pandas as pd

from .readers import dumps

__all__ = [
    "MAX_ROWS",
    "Table",
    "Fig",
    "Section",
    "Report",
    "write_report",
    "pct",
    "ci",
    "pvalue",
    "p_text",
    "format_table",
    "save_png",
]

MAX_ROWS = 40
"""Rows of a table shown in the HTML and Markdown reports (the CSV has all)."""


@dataclass
class Table:
    name: str
    caption: str
    data: pd.DataFrame
    display: pd.DataFrame | None = None
    """What the HTML and Markdown show (default: ``data`` formatted)."""


@dataclass
class Fig:
    name: str
    caption: str
    figure: Any


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Fig] = field(default_factory=list)
    level: int = 2

    @property
    def empty(self) -> bool:
        return not (self.tables or self.figures)


@dataclass
class Report:
    title: str
    sections: list[Section]
    summary: dict[str, Any]
    console: list[str]


# ---- formatting ------------------------------------------------------------------------------
def pct(x: Any, digits: int = 1) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return ""
    return "" if not math.isfinite(x) else f"{100 * x:.{digits}f}"


def ci(lo: Any, hi: Any, digits: int = 1) -> str:
    a, b = pct(lo, digits), pct(hi, digits)
    return f"[{a}, {b}]" if a and b else ""


def pvalue(x: Any) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(x):
        return ""
    return "< 1e-300" if x == 0 else (f"{x:.3g}" if x >= 1e-4 else f"{x:.1e}")


def p_text(x: Any) -> str:
    t = pvalue(x)
    return f"p {t}" if t.startswith("<") else f"p = {t}"


def format_table(df: pd.DataFrame) -> pd.DataFrame:
    """Floats to 4 significant digits, p-values in short form, missing values empty."""
    out = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_float_dtype(s):
            if str(c).startswith("p_") or c == "p_value":
                out[c] = s.map(pvalue)
            else:
                out[c] = s.map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
        else:
            out[c] = s.astype(object).where(s.notna(), "")
    return pd.DataFrame(out, index=df.index)


def save_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ---- writing -----------------------------------------------------------------------------------
def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]

    def esc(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(esc(v) for v in row) + " |")
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}caption{text-align:left;
font-weight:600;padding:4px 0}figure{margin:1em 0}figcaption{font-size:13px;color:#555}img{max-width:100%}
.note{font-size:12px;color:#666}nav a{margin-right:1em}"""


def write_report(report: Report, out_dir: str | Path) -> dict[str, Any]:
    """Write the report's files into ``out_dir`` (created); returns the paths written."""
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    md = [f"# {report.title}", "", f"Generated {report.summary['generated']}.", ""]
    body = [
        f"<h1>{html.escape(report.title)}</h1>",
        f"<p class=note>Generated {report.summary['generated']}.</p>",
        "<nav>"
        + "".join(f"<a href='#s{k}'>{html.escape(s.title)}</a>" for k, s in enumerate(report.sections))
        + "</nav>",
    ]
    written_tables, written_figs = [], []
    table_names: set[str] = set()
    figure_names: set[str] = set()
    for k, sec in enumerate(report.sections):
        md += [f"{'#' * sec.level} {sec.title}", ""]
        body.append(f"<h{sec.level} id='s{k}'>{html.escape(sec.title)}</h{sec.level}>")
        for t in sec.text:
            md += [t, ""]
            body.append(f"<p>{html.escape(t)}</p>")
        for fig in sec.figures:
            name = _unique(fig.name, figure_names)
            png = save_png(fig.figure)
            (out / "figures" / f"{name}.png").write_bytes(png)
            written_figs.append(f"figures/{name}.png")
            md += [f"![{fig.caption}](figures/{name}.png)", "", f"*{fig.caption}*", ""]
            body.append(
                f"<figure><img alt='{html.escape(fig.caption, quote=True)}' src='data:image/png;base64,"
                f"{base64.b64encode(png).decode()}'><figcaption>{html.escape(fig.caption)}</figcaption></figure>"
            )
            fig.figure.clear()
        for t in sec.tables:
            name = _unique(t.name, table_names)
            t.data.to_csv(out / "tables" / f"{name}.csv", index=False)
            written_tables.append(f"tables/{name}.csv")
            shown = format_table(t.data) if t.display is None else t.display
            more = ""
            if len(shown) > MAX_ROWS:
                more = f"First {MAX_ROWS} of {len(shown)} rows; all in tables/{name}.csv."
                shown = shown.head(MAX_ROWS)
            md += [f"**{t.caption}** (`tables/{name}.csv`)", "", _md_table(shown) if len(shown) else "(empty)", ""]
            if more:
                md += [f"_{more}_", ""]
            if len(shown):
                h = shown.to_html(index=False, border=0, escape=True, na_rep="")
                i = h.index(">") + 1
                cap = f"<caption>{html.escape(t.caption)} <span class=note>(tables/{name}.csv)</span></caption>"
                body.append(h[:i] + cap + h[i:])
            else:
                body.append(f"<p><b>{html.escape(t.caption)}</b>: (empty)</p>")
            if more:
                body.append(f"<p class=note>{html.escape(more)}</p>")
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>smart-study report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    (out / "report.html").write_text(page, encoding="utf-8")
    summary = dict(report.summary)
    summary["files"] = {
        "html": str(out / "report.html"),
        "markdown": str(out / "report.md"),
        "tables": written_tables,
        "figures": written_figs,
    }
    (out / "summary.json").write_text(dumps(summary) + "\n", encoding="utf-8")
    return summary["files"]


def _unique(name: str, taken: set[str]) -> str:
    base, k = name, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name
