"""The report as a document (sections of text, tables and figures) and its writer.

:func:`write_report` writes a :class:`Report` into one folder:

* ``report.html``: self-contained (figures embedded as SVG, no external files; wide tables scroll in
  their box; a click on a column heading sorts the table);
* ``report.md``: the same text and tables, figures linked from ``figures/``;
* ``tables/<name>.csv``: every table, complete (HTML and Markdown show at most
  ``MAX_ROWS`` rows of long tables);
* ``figures/<name>.png``, ``.svg`` and ``.pdf``: every figure, raster and vector (no dates in the
  files, so the same report gives the same bytes);
* ``summary.json``: the headline numbers (what ``analysis report --json`` prints).

``write_report(..., summary_only=True)`` writes the one-page summary instead: ``summary.html``
(the key numbers and every figure, for a talk or a lab meeting), the figures and ``summary.json``.
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

from .figures import STYLE
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
    "save_figure",
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


def save_figure(fig: Any, fmt: str) -> bytes:
    """``fig`` as PNG (150 dpi), SVG or PDF bytes, in the figures' style and without a creation date.

    The layout is computed at the first save and then kept (a layout engine run again on a drawn
    figure with a legend below its axes can shrink the axes to nothing), so every format shows the same.
    """
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):  # svg.hashsalt and the font types are read when saving
        if fmt == "png":
            fig.savefig(buf, format="png", dpi=150, metadata={"Software": None})
        elif fmt == "svg":
            fig.savefig(buf, format="svg", metadata={"Date": None})
        elif fmt == "pdf":
            fig.savefig(buf, format="pdf", metadata={"CreationDate": None, "ModDate": None})
        else:
            raise ValueError(f"unknown figure format {fmt!r}; expected png, svg or pdf")
    fig.set_layout_engine("none")
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
text-align:right;white-space:nowrap}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}caption{text-align:left;
font-weight:600;padding:4px 0}figure{margin:1em 0}figcaption{font-size:13px;color:#555}img{max-width:100%}
.note{font-size:12px;color:#666}nav a{margin-right:1em}.wide{overflow-x:auto;max-width:100%}
table.sortable th{cursor:pointer}
th[data-order=asc]::after{content:" \\25B2"}th[data-order=desc]::after{content:" \\25BC"}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid figure{flex:1 1 320px;margin:0}ul.key{font-size:14px}"""

# a click on a heading sorts the table by that column (numbers by value, a leading < or > ignored; text
# alphabetically; empty cells last); a second click reverses
_SORT_JS = """document.querySelectorAll("table.sortable").forEach(function(t){
var heads=t.tHead?t.tHead.rows[0].cells:[];
Array.prototype.forEach.call(heads,function(th,k){th.title="Sort by this column";th.addEventListener("click",function(){
var asc=th.dataset.order!=="asc";Array.prototype.forEach.call(heads,function(h){delete h.dataset.order});
th.dataset.order=asc?"asc":"desc";var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
function key(r){var s=r.cells[k].textContent.trim(),m=s.match(/^[<>]?\\s*(-?\\d+(?:\\.\\d+)?(?:e[-+]?\\d+)?)/i);
return s===""?[2,0]:m?[0,parseFloat(m[1])]:[1,s]}
rows.sort(function(a,b){var x=key(a),y=key(b);if(x[0]!==y[0])return x[0]-y[0];if(x[0]===2)return 0;
var c=x[1]<y[1]?-1:x[1]>y[1]?1:0;return asc?c:-c});rows.forEach(function(r){body.appendChild(r)})})})});"""


def _figure_html(caption: str, svg: bytes) -> str:
    return (
        f"<figure><img alt='{html.escape(caption, quote=True)}' src='data:image/svg+xml;base64,"
        f"{base64.b64encode(svg).decode()}'><figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _page(title: str, body: list[str], script: str = "") -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}"
        + (f"<script>{script}</script>" if script else "")
        + "</body></html>"
    )


def _write_figures(report: Report, out: Path) -> tuple[dict[int, str], list[str], list[str]]:
    """Every figure as PNG, SVG and PDF; its HTML per figure id, the PNG paths, the vector paths."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    shown, pngs, vectors = {}, [], []
    names: set[str] = set()
    for sec in report.sections:
        for fig in sec.figures:
            name = _unique(fig.name, names)
            data = {fmt: save_figure(fig.figure, fmt) for fmt in ("png", "svg", "pdf")}
            for fmt, b in data.items():
                (out / "figures" / f"{name}.{fmt}").write_bytes(b)
            pngs.append(f"figures/{name}.png")
            vectors += [f"figures/{name}.svg", f"figures/{name}.pdf"]
            shown[id(fig)] = _figure_html(fig.caption, data["svg"])
            fig.name = name
            fig.figure.clear()
    return shown, pngs, vectors


def _write_summary_page(report: Report, out: Path) -> dict[str, Any]:
    shown, pngs, vectors = _write_figures(report, out)
    body = [
        f"<h1>{html.escape(report.title)}: summary</h1>",
        f"<p class=note>Generated {report.summary['generated']}; the full report: analysis report without "
        "--format summary.</p>",
        "<ul class=key>" + "".join(f"<li>{html.escape(line)}</li>" for line in report.console) + "</ul>",
        "<div class=grid>" + "".join(shown[id(f)] for s in report.sections for f in s.figures) + "</div>",
    ]
    (out / "summary.html").write_text(_page(f"{report.title}: summary", body), encoding="utf-8")
    summary = dict(report.summary)
    summary["files"] = {"summary": str(out / "summary.html"), "tables": [], "figures": pngs, "vector_figures": vectors}
    (out / "summary.json").write_text(dumps(summary) + "\n", encoding="utf-8")
    return summary["files"]


def write_report(report: Report, out_dir: str | Path, summary_only: bool = False) -> dict[str, Any]:
    """Write the report's files into ``out_dir`` (created); returns the paths written."""
    out = Path(out_dir)
    if summary_only:
        return _write_summary_page(report, out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    shown_figs, written_figs, vector_figs = _write_figures(report, out)
    md = [f"# {report.title}", "", f"Generated {report.summary['generated']}.", ""]
    body = [
        f"<h1>{html.escape(report.title)}</h1>",
        f"<p class=note>Generated {report.summary['generated']}.</p>",
        "<nav>"
        + "".join(f"<a href='#s{k}'>{html.escape(s.title)}</a>" for k, s in enumerate(report.sections))
        + "</nav>",
    ]
    written_tables = []
    table_names: set[str] = set()
    for k, sec in enumerate(report.sections):
        md += [f"{'#' * sec.level} {sec.title}", ""]
        body.append(f"<h{sec.level} id='s{k}'>{html.escape(sec.title)}</h{sec.level}>")
        for t in sec.text:
            md += [t, ""]
            body.append(f"<p>{html.escape(t)}</p>")
        for fig in sec.figures:
            md += [f"![{fig.caption}](figures/{fig.name}.png)", "", f"*{fig.caption}*", ""]
            body.append(shown_figs[id(fig)])
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
                h = shown.to_html(index=False, border=0, escape=True, na_rep="", classes="sortable")
                i = h.index(">") + 1
                cap = f"<caption>{html.escape(t.caption)} <span class=note>(tables/{name}.csv)</span></caption>"
                body.append("<div class=wide>" + h[:i] + cap + h[i:] + "</div>")
            else:
                body.append(f"<p><b>{html.escape(t.caption)}</b>: (empty)</p>")
            if more:
                body.append(f"<p class=note>{html.escape(more)}</p>")
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    (out / "report.html").write_text(_page(report.title, body, _SORT_JS), encoding="utf-8")
    summary = dict(report.summary)
    summary["files"] = {
        "html": str(out / "report.html"),
        "markdown": str(out / "report.md"),
        "tables": written_tables,
        "figures": written_figs,
        "vector_figures": vector_figs,
    }
    (out / "summary.json").write_text(dumps(summary) + "\n", encoding="utf-8")
    return summary["files"]


def _unique(name: str, taken: set[str]) -> str:
    base, k = name, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name
