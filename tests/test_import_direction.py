"""The packages import in one direction (DESIGN.md): protoexplain -> prototypes -> hdm.

Every ``.py`` file of ``hdm/``, ``prototypes/`` and ``protoexplain/`` is parsed (not imported),
and every import is collected: ``import x``, ``from x import y``, relative imports (resolved
against the file's package) and imports inside functions or ``if`` blocks.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hdm", "prototypes", "protoexplain")
SCRIPTS = {"benchmarks", "research", "tests"}
"""Folders of scripts and tests, which the packages must never import."""


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file at ``path`` (under ROOT)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: one dot is the file's own package
                base = package[:len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((node.lineno, module))
    return found


def _imports_of(package: str) -> list[tuple[str, int, str]]:
    """(file relative to the repository, line, module) of every import in ``package``."""
    return [(str(path.relative_to(ROOT)), line, module)
            for path in sorted((ROOT / package).rglob("*.py"))
            for line, module in imported_modules(path)]


def _offences(package: str, allowed) -> list[str]:
    return [f"{file}:{line}: imports {module}" for file, line, module in _imports_of(package)
            if not allowed(module.split(".")[0])]


def test_hdm_imports_only_itself_torch_numpy_tqdm_and_the_standard_library():
    # tqdm draws the progress bar of every long loop (mask optimisation, RISE, metrics).
    allowed = {"hdm", "torch", "numpy", "tqdm"} | set(sys.stdlib_module_names)
    offences = _offences("hdm", allowed.__contains__)
    assert not offences, "hdm must stay model-agnostic:\n" + "\n".join(offences)


def test_prototypes_never_imports_the_application():
    offences = _offences("prototypes", lambda top: top != "protoexplain")
    assert not offences, "prototypes imports protoexplain:\n" + "\n".join(offences)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_scripts_or_tests(package):
    offences = _offences(package, lambda top: top not in SCRIPTS)
    assert not offences, "\n".join(offences)


def test_imports_are_found_in_every_form(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    file = tmp_path / "pkg" / "sub" / "mod.py"
    file.parent.mkdir(parents=True)
    file.write_text("import os, numpy.linalg as la\n"
                    "from . import sibling\n"
                    "from ..other import thing\n"
                    "from .inner.deep import x\n"
                    "def f():\n"
                    "    if True:\n"
                    "        from tests.helpers import y\n")
    assert imported_modules(file) == [
        (1, "os"), (1, "numpy.linalg"), (2, "pkg.sub"), (3, "pkg.other"),
        (4, "pkg.sub.inner.deep"), (7, "tests.helpers")]
    init = tmp_path / "pkg" / "__init__.py"
    init.write_text("from .sub import mod\n")
    assert imported_modules(init) == [(1, "pkg.sub")]
