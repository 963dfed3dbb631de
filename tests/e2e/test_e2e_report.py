"""The HTML report in real Chromium: vector figures decode, wide tables scroll inside their box instead
of widening the page, and a click on a column heading sorts the table (numbers by value)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from support.attack_files import write_fake_result
from support.batches import analysis_batch

from analysis.cli import cli

NUMERIC_COLUMN = """() => {
  // the first table with at least 4 rows and a column of distinct numbers in every cell
  for (const [t, table] of [...document.querySelectorAll('table.sortable')].entries()) {
    const rows = [...table.tBodies[0].rows];
    if (rows.length < 4) continue;
    for (let k = 0; k < rows[0].cells.length; k++) {
      const v = rows.map(r => r.cells[k].textContent.trim());
      if (v.every(s => /^-?\\d+(\\.\\d+)?$/.test(s)) && new Set(v).size > 2) return [t, k];
    }
  }
  return null;
}"""


def _column(page, t: int, k: int) -> list[float]:
    return page.evaluate(
        "([t, k]) => [...document.querySelectorAll('table.sortable')[t].tBodies[0].rows]"
        ".map(r => parseFloat(r.cells[k].textContent))",
        [t, k],
    )


def test_the_report_page_in_chromium(page, tmp_path: Path):
    batch = analysis_batch(5)
    runner = CliRunner()
    res = runner.invoke(
        cli,
        ["simulate", "--participants", "12", "--seed", "5", "--batch", str(batch)] + ["--out", str(tmp_path / "r.csv")],
    )
    assert res.exit_code == 0, res.output
    write_fake_result(tmp_path / "agcn_ab_smart.npz")
    res = runner.invoke(
        cli,
        ["report", "--responses", str(tmp_path / "r.csv"), "--batch", str(batch), "--attacks", str(tmp_path)]
        + ["--out", str(tmp_path / "out"), "--bootstrap", "50", "--no-glmm"],
    )
    assert res.exit_code == 0, res.output
    page.goto((tmp_path / "out" / "report.html").as_uri())
    images = page.evaluate("() => [...document.images].map(i => [i.complete, i.naturalWidth, i.src.slice(0, 26)])")
    assert images and all(ok and w > 0 and src == "data:image/svg+xml;base64," for ok, w, src in images)
    # the page is no wider than the window; the widest tables scroll inside their boxes
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert page.evaluate("() => [...document.querySelectorAll('.wide')].some(d => d.scrollWidth > d.clientWidth)")
    found = page.evaluate(NUMERIC_COLUMN)
    assert found, "no table with a numeric column to sort"
    t, k = found
    before = _column(page, t, k)
    heading = page.locator("table.sortable").nth(t).locator("thead th").nth(k)
    heading.click()
    assert _column(page, t, k) == sorted(before) and heading.get_attribute("data-order") == "asc"
    heading.click()
    assert _column(page, t, k) == sorted(before, reverse=True) and heading.get_attribute("data-order") == "desc"
    assert page.js_errors == []
