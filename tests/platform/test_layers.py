"""The layers hold (docs/architecture.md): the import-linter contracts of pyproject.toml
pass on the code as it is, and fail as soon as a lower layer imports a higher one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AREAS = ("platform", "tenants", "regions", "media_nodes", "compliance")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def view_of_the_code(where: Path) -> Path:
    """A copy of the package as ``konsil.<area>`` (the editable install's import hook is
    invisible to grimp), which a test may change."""
    for area in AREAS:
        shutil.copytree(ROOT / area, where / "konsil" / area, ignore=shutil.ignore_patterns("__pycache__", "static"))
    return where


def lint_imports(view: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=view,
        env={"PYTHONPATH": str(view), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_contracts_hold_for_the_code_as_it_is(tmp_path: Path) -> None:
    result = lint_imports(view_of_the_code(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_backward_import_from_the_core_into_an_area_breaks_the_layers(tmp_path: Path) -> None:
    view = view_of_the_code(tmp_path)
    text = view / "konsil" / "platform" / "core" / "text.py"
    text.write_text(text.read_text() + "\nfrom konsil.tenants import visits as _backward  # noqa\n")
    result = lint_imports(view)
    assert result.returncode != 0
    assert "konsil.platform.core.text -> konsil.tenants.visits" in result.stdout


def test_the_control_plane_importing_region_code_breaks_its_contract(tmp_path: Path) -> None:
    view = view_of_the_code(tmp_path)
    gateway = view / "konsil" / "platform" / "control" / "gateway.py"
    backward = "\nfrom konsil.regions.container import open_region as _backward  # noqa\n"
    gateway.write_text(gateway.read_text() + backward)
    result = lint_imports(view)
    assert result.returncode != 0
    assert "konsil.platform.control.gateway -> konsil.regions.container" in result.stdout


def test_an_area_importing_a_process_assembly_breaks_the_layers(tmp_path: Path) -> None:
    view = view_of_the_code(tmp_path)
    purge = view / "konsil" / "compliance" / "retention" / "purge.py"
    purge.write_text(purge.read_text() + "\nfrom konsil.regions import tables as _backward  # noqa\n")
    result = lint_imports(view)
    assert result.returncode != 0
    assert "konsil.compliance.retention.purge -> konsil.regions.tables" in result.stdout


def test_a_messaging_service_importing_a_page_module_breaks_its_contract(tmp_path: Path) -> None:
    view = view_of_the_code(tmp_path)
    settings = view / "konsil" / "tenants" / "messaging" / "member_settings.py"
    backward = "\nfrom konsil.tenants.visitor_pages import law_area as _backward  # noqa\n"
    settings.write_text(settings.read_text() + backward)
    result = lint_imports(view)
    assert result.returncode != 0
    assert "konsil.tenants.messaging.member_settings -> konsil.tenants.visitor_pages" in result.stdout
