"""Packaging guards (docs/architecture.md, folder → layer).

The area folders map to ``konsil.<area>`` through ``package-dir`` and have no
``__init__.py`` at their top, so ``platform/`` never shadows the standard library.
These tests build the wheel and import every module from it in a child process, and
check in child processes that ``import platform`` run from the repository root still
gives the standard library's module. The package list against the folders is checked
without a build in tests/platform/test_package_layout.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AREAS, REPO_ROOT, build_wheel


def _area_files(area: str) -> list[Path]:
    folder = REPO_ROOT / area
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


@dataclass(frozen=True)
class Wheel:
    path: Path
    names: list[str]  # archive member names
    site: Path  # where the wheel is unpacked (its install dir)

    @property
    def modules(self) -> list[str]:
        found = []
        for name in self.names:
            if not name.endswith(".py") or ".dist-info/" in name:
                continue
            parts = name[: -len(".py")].split("/")
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append(".".join(parts))
        return sorted(found)


@pytest.fixture(scope="module")
def wheel(built_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    """The session's wheel (``built_wheel``, tests/e2e/conftest.py: built from a copy of
    the repository root), unpacked into a fresh dir."""
    site = tmp_path_factory.mktemp("wheel") / "site"
    with zipfile.ZipFile(built_wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    return Wheel(built_wheel, names, site)


IMPORT_ALL = """
import importlib, json, sys, traceback
site = sys.argv[1]
sys.path.insert(0, site)  # before site-packages and the editable install's finder
report = {"sys_path": sys.path, "modules": {}, "errors": {}}
for name in json.loads(sys.argv[2]):
    try:
        module = importlib.import_module(name)
    except BaseException as exc:
        report["errors"][name] = "".join(traceback.format_exception_only(exc)).strip()
        continue
    report["modules"][name] = {
        "file": getattr(module, "__file__", None),
        "path": [str(p) for p in getattr(module, "__path__", None) or []],
    }
# Everything of konsil that got imported along the way, directly or not.
report["loaded"] = {
    name: getattr(module, "__file__", None)
    for name, module in sorted(sys.modules.items())
    if name.startswith("konsil.")
}
print(json.dumps(report))
"""


def _import_in_child(
    wheel: Wheel, names: list[str], tmp_path: Path, child_env: Callable[..., dict[str, str]]
) -> dict[str, Any]:
    done = subprocess.run(
        # -I: no current directory or PYTHONPATH on sys.path; site-packages (and so the
        # editable install) still load, after the wheel dir inserted at the front.
        [sys.executable, "-I", "-c", IMPORT_ALL, str(wheel.site), json.dumps(names)],
        cwd=tmp_path,  # piccolo_conf creates a directory relative to the cwd on import
        env=child_env(PICCOLO_TARGET_DSN=f"sqlite://{tmp_path}/piccolo.db"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _inside(path: str | None, root: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(root.resolve())


def test_every_module_of_the_wheel_imports_from_the_wheel(
    wheel: Wheel, tmp_path: Path, child_env: Callable[..., dict[str, str]]
) -> None:
    modules = wheel.modules
    assert "konsil.platform.cli.main" in modules
    assert "konsil.platform.core.settings" in modules
    migrations = [m for m in modules if ".piccolo_migrations." in m]
    assert any(m.startswith("konsil.platform.control.piccolo_migrations.") for m in migrations), modules
    assert any(m.startswith("konsil.regions.piccolo_migrations.") for m in migrations), modules

    report = _import_in_child(wheel, modules, tmp_path, child_env)

    assert report["sys_path"][0] == str(wheel.site)
    assert str(REPO_ROOT) not in report["sys_path"]
    assert report["errors"] == {}, "modules of the wheel that do not import:\n" + "\n".join(
        f"{name}: {error}" for name, error in report["errors"].items()
    )
    outside = {name: info["file"] for name, info in report["modules"].items() if not _inside(info["file"], wheel.site)}
    # A module the wheel lacks would be found through the editable install, in the repository.
    assert outside == {}, f"imported from outside the wheel (is the wheel incomplete?): {outside}"
    assert set(report["modules"]) == set(modules)
    strays = {
        name: file for name, file in report["loaded"].items() if file is not None and not _inside(file, wheel.site)
    }
    assert strays == {}, f"modules pulled in from outside the wheel: {strays}"


def test_wheel_holds_every_python_file_and_template_of_the_areas(wheel: Wheel) -> None:
    members = set(wheel.names)
    missing = []
    for area in AREAS:
        for path in _area_files(area):
            relative = path.relative_to(REPO_ROOT / area).as_posix()
            is_template = "templates" in path.relative_to(REPO_ROOT / area).parts
            # What the pages need at run time: scripts, styles, catalogs, legal wording.
            is_page_file = path.suffix in {".js", ".css", ".svg", ".po", ".toml"}
            if (path.suffix == ".py" or is_template or is_page_file) and f"konsil/{area}/{relative}" not in members:
                missing.append(f"{area}/{relative}")
    assert missing == [], f"files of the repository missing from the wheel: {missing}"
    templates = {n for n in members if n.startswith("konsil/tenants/templates/")}
    assert {"konsil/tenants/templates/join.html", "konsil/tenants/templates/login.html"} <= templates
    assert {
        "konsil/platform/pages/templates/base.html",
        "konsil/platform/pages/legal.toml",
        "konsil/platform/pages/locale/nb/LC_MESSAGES/pages.po",
        "konsil/tenants/locale/de/LC_MESSAGES/visitor.po",
        "konsil/platform/control/templates/signup.html",
    } <= members


def test_wheel_has_no_init_at_the_top_of_konsil_or_an_area(wheel: Wheel) -> None:
    tops = {"konsil/__init__.py"} | {f"konsil/{area}/__init__.py" for area in AREAS}
    assert tops.isdisjoint(wheel.names)


@pytest.mark.parametrize("area", AREAS)
def test_area_package_is_in_the_wheel(
    area: str, wheel: Wheel, tmp_path: Path, child_env: Callable[..., dict[str, str]]
) -> None:
    assert any(name.startswith(f"konsil/{area}/") for name in wheel.names), f"no konsil/{area}/ in the wheel"
    report = _import_in_child(wheel, [f"konsil.{area}"], tmp_path, child_env)
    assert report["errors"] == {}
    info = report["modules"][f"konsil.{area}"]
    assert info["file"] is None, "an area package must stay a namespace package (no __init__.py)"
    assert str((wheel.site / "konsil" / area).resolve()) in [str(Path(p).resolve()) for p in info["path"]]


def _git_export(destination: Path) -> bool:
    """Copy what a fresh clone would hold (tracked and new, non-ignored files)."""
    git = shutil.which("git")
    if git is None:
        return False
    listed = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if listed.returncode != 0:
        return False
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file() and not name.startswith(".venv/"):
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return True


def _git_tracks_files_under(area: str) -> bool:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", f"{area}/"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return bool(listed.stdout.strip())


def test_wheel_builds_from_a_fresh_checkout(tmp_path: Path) -> None:
    """Git keeps no empty folders: every mapped area must hold a file to exist in a clone."""
    source = tmp_path / "src"
    if not _git_export(source):
        pytest.skip("not a git checkout")
    done = build_wheel(source, tmp_path / "dist")
    assert done.returncode == 0, f"wheel build from a fresh checkout failed:\n{done.stderr[-2000:]}"


STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
PROBE = (
    "import platform, uuid; "
    "assert uuid.uuid4().version == 4 and platform.python_implementation(); "
    "import konsil.platform.core.settings as s; "
    "print(platform.__file__); print(s.__file__)"
)


@pytest.mark.parametrize(
    ("code", "cwd_is_root", "pythonpath_is_root"),
    [
        pytest.param(f"import sys; sys.path.insert(0, ''); {PROBE}", True, False, id="path-insert-empty"),
        pytest.param(PROBE, True, False, id="python-c-from-root"),
        pytest.param(f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); {PROBE}", False, False, id="root-first"),
        pytest.param(PROBE, False, True, id="pythonpath-root"),
    ],
)
def test_import_platform_gives_the_standard_library(
    code: str,
    cwd_is_root: bool,
    pythonpath_is_root: bool,
    tmp_path: Path,
    child_env: Callable[..., dict[str, str]],
) -> None:
    env = child_env(PYTHONPATH=str(REPO_ROOT)) if pythonpath_is_root else child_env()
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT if cwd_is_root else tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    platform_file, settings_file = done.stdout.split()
    assert Path(platform_file).resolve().parent == STDLIB
    assert Path(platform_file).name == "platform.py"
    # The area folder is still importable as konsil.platform next to the stdlib module.
    assert Path(settings_file).resolve() == (REPO_ROOT / "platform" / "core" / "settings.py").resolve()


def test_python_m_platform_from_the_root_runs_the_standard_library(child_env: Callable[..., dict[str, str]]) -> None:
    # ``python -m`` puts the current directory first on sys.path (as ``python -m pytest`` does).
    done = subprocess.run(
        [sys.executable, "-m", "platform"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert done.stderr == ""


def test_konsil_console_script_lists_its_subcommands(
    konsil_script: Path, tmp_path: Path, child_env: Callable[..., dict[str, str]]
) -> None:
    assert konsil_script.is_file(), f"no console script at {konsil_script}"
    done = subprocess.run(
        [str(konsil_script), "--help"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    match = re.search(r"\{([a-z\-,]+)\}", done.stdout)
    assert match, done.stdout
    assert {"up", "serve", "migrate", "audit"} <= set(match.group(1).split(","))
