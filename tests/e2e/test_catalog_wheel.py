"""The control catalogs (compliance/controls/*.toml) ship in the wheel and load from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

FRAMEWORKS = ("gdpr", "hipaa", "nen7510", "normen")


def test_catalog_files_ship_in_the_wheel_and_load_from_it(built_wheel: Path, tmp_path: Path) -> None:
    wheel = built_wheel  # the session's wheel (tests/e2e/conftest.py)
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(site)
    assert {f"konsil/compliance/controls/{f}.toml" for f in FRAMEWORKS} <= names
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from konsil.compliance.controls import catalog; "
        "print(catalog.__file__); print(sorted(catalog.load_catalogs()))"
    )
    run = subprocess.run(
        [sys.executable, "-I", "-c", code, str(site)], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    module_file, loaded = run.stdout.splitlines()
    assert Path(module_file).resolve().is_relative_to(site.resolve())
    assert loaded == str(sorted(FRAMEWORKS))
