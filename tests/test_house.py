"""The house is a star: ``stimuli`` in the middle, ``attack_gen``, ``study_server`` and ``analysis`` around it.

Read from the source with ``ast`` (every import statement, at any depth, also those inside
functions): a leaf never imports another leaf, ``stimuli`` imports no leaf, and only
``attack_gen`` imports torch or Ray. Test fixtures live in ``tests/``, not in the packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = "stimuli"
LEAVES = ("attack_gen", "study_server", "analysis")
HEAVY = ("torch", "ray")


def imports(package: str) -> list[tuple[str, int, str]]:
    """``(file, line, top-level module)`` for every absolute import in ``package`` (relative ones stay inside)."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.append((str(path.relative_to(ROOT)), node.lineno, name.split(".")[0]))
    return found


def test_imports_parse_what_they_should():
    """The reader sees imports inside functions too (a check of the check)."""
    rows = imports("study_server")
    assert any(mod == "flask" for _, _, mod in rows)
    assert any(mod == "stimuli" for _, _, mod in rows)
    assert any(mod == "torch" for _, _, mod in imports("attack_gen"))


@pytest.mark.parametrize("package", (CORE, *LEAVES))
def test_the_import_graph_is_a_star(package):
    others = set(LEAVES) - {package}
    bad = [f"{f}:{line} imports {mod}" for f, line, mod in imports(package) if mod in others]
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("package", (CORE, "study_server", "analysis"))
def test_only_attack_gen_imports_torch_or_ray(package):
    bad = [f"{f}:{line} imports {mod}" for f, line, mod in imports(package) if mod in HEAVY]
    assert not bad, "; ".join(bad)


def test_no_test_fixtures_inside_the_packages():
    shipped = [p.relative_to(ROOT) for pkg in (CORE, *LEAVES) for p in (ROOT / pkg).rglob("testing.py")]
    assert not shipped
