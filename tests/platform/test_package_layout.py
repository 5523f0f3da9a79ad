"""Packaging guards that need no build (docs/architecture.md, folder → layer): the area folders map to
``konsil.<area>`` through ``package-dir``, every folder with Python files is a listed
package, and no area has an ``__init__.py`` at its top (``platform/`` would shadow the
standard library). Building the wheel and importing from it is in tests/e2e."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
AREAS = ("platform", "tenants", "regions", "media_nodes", "compliance")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_python_folder_of_the_areas_is_a_listed_package() -> None:
    setuptools_conf = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools_conf["packages"])
    package_dir = setuptools_conf["package-dir"]
    assert {package_dir[f"konsil.{area}"] for area in AREAS} == set(AREAS)
    expected = set()
    for area in AREAS:
        folder = REPO_ROOT / area
        for path in folder.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            relative = path.parent.relative_to(folder).parts
            expected.add(".".join(("konsil", area, *relative)))
    assert expected, "no Python files found under the area folders"
    assert expected - listed == set(), "folders with Python files missing from [tool.setuptools] packages"


def test_every_listed_package_has_a_folder() -> None:
    setuptools_conf = _pyproject()["tool"]["setuptools"]
    package_dir = setuptools_conf["package-dir"]
    missing = []
    for package in setuptools_conf["packages"]:
        parts = package.split(".")
        prefix = next(n for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in package_dir)
        folder = REPO_ROOT / package_dir[".".join(parts[:prefix])] / "/".join(parts[prefix:])
        if not folder.is_dir():
            missing.append(package)
    assert missing == [], "packages listed in pyproject.toml without a folder in the working tree"


@pytest.mark.parametrize("area", AREAS)
def test_no_init_at_the_top_of_an_area_folder(area: str) -> None:
    assert not (REPO_ROOT / area / "__init__.py").exists()
    assert not (REPO_ROOT / area / "__init__.pyi").exists()
