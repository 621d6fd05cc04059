"""The test and bench modules import only what plain ``pytest`` can find.

The README's command is ``pytest`` (not ``python -m pytest``), under which pytest's
default "prepend" import mode puts each test file's own directory on ``sys.path`` but not
the repository root. A ``from tests._env import ...`` therefore works under
``python -m pytest`` and fails collection in CI; stop 24's CI run failed exactly so.
This check reads every test and bench module's imports (without importing them) and
names any that reach for the ``tests`` or ``bench`` package.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted([*ROOT.joinpath("tests").glob("*.py"), *ROOT.joinpath("bench").glob("*.py")])
ROOT_ONLY_PACKAGES = {"tests", "bench"}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_modules_found():
    # Guards the check below against a glob that silently matches nothing.
    assert len(MODULES) > 50


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_import_through_the_repository_root(path):
    bad = _imported_top_levels(path) & ROOT_ONLY_PACKAGES
    assert not bad, (
        f"{path.name} imports {sorted(bad)}, which only resolves when the repository root "
        "is on sys.path (python -m pytest); import the sibling module directly, "
        "e.g. `from _env import subprocess_env`"
    )
