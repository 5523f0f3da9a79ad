"""The container image recipe (Dockerfile, .dockerignore) read instruction by instruction:
multi-stage on slim Python 3.11, wheels built in the first stage and only installed in the
second, a non-root runtime with ``konsil`` as entrypoint, coturn only in the media-node
target, and a build context without the venv, the tests or local data. (No container
engine runs here; the builder's pip steps were run by hand, helm/README.md.)"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile: continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation line ends the file"
    stages: list[Stage] = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert match, line
            stages.append(Stage(name=match.group(2) or str(len(stages)), base=match.group(1)))
        elif stages:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def stages(dockerfile: str) -> dict[str, Stage]:
    return {stage.name: stage for stage in parse(dockerfile)}


def arg_default(dockerfile: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", dockerfile, re.MULTILINE)
    assert match, f"ARG {name} has no default"
    return match.group(1)


def base_of(stage: Stage, stages: dict[str, Stage], dockerfile: str) -> str:
    """The image a stage starts from, through the stages it builds on and ARG defaults."""
    base = stage.base
    while base in stages:
        base = stages[base].base
    return re.sub(r"\$\{(\w+)\}", lambda m: arg_default(dockerfile, m.group(1)), base)


def test_multi_stage_on_slim_python_311(stages: dict[str, Stage], dockerfile: str) -> None:
    assert list(stages)[:3] == ["builder", "runtime", "media-node"]
    for stage in stages.values():
        assert base_of(stage, stages, dockerfile) == "python:3.11-slim", stage.name
    # `docker build .` (no --target) gives the last stage: the image of every process
    # kind but the media node, without coturn.
    last = list(stages.values())[-1]
    assert last.base == "runtime"
    assert not last.instructions or all(name == "LABEL" for name, _ in last.instructions)


def test_builder_builds_wheels_of_the_package_with_the_network_test(stages: dict[str, Stage]) -> None:
    runs = " ".join(stages["builder"].all("RUN"))
    assert re.search(r"pip wheel --wheel-dir /wheels \"\.\[network-test\]\"", runs), runs
    # Every package folder of the distribution is in the build (pyproject's package-dir).
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied = {args.split()[0] for args in stages["builder"].all("COPY")}
    assert folders <= copied, f"not copied into the build: {sorted(folders - copied)}"
    assert {"pyproject.toml", "README.md"} <= set(" ".join(stages["builder"].all("COPY")).split())


def test_runtime_installs_only_the_built_wheels(stages: dict[str, Stage], dockerfile: str) -> None:
    runtime = " ".join(stages["runtime"].all("RUN"))
    assert "--mount=type=bind,from=builder,source=/wheels,target=/wheels" in runtime
    assert re.search(r"pip install --no-index --find-links=/wheels \"konsil\[network-test\]\"", runtime), runtime
    assert not re.search(r"pip install\b[^&]*\s(-e|--editable)\b", dockerfile), "no editable install in an image"
    assert "build-essential" not in dockerfile and "gcc" not in dockerfile


@pytest.mark.parametrize("stage", ["runtime", "media-node"])
def test_images_run_as_uid_10001_with_konsil_as_entrypoint(stages: dict[str, Stage], stage: str) -> None:
    chain = [stages[stage]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    users = [user for s in reversed(chain) for user in s.all("USER")]
    assert users and users[-1] == "10001:10001", f"{stage} ends as {users[-1:]}"
    entrypoints = [e for s in reversed(chain) for e in s.all("ENTRYPOINT")]
    assert entrypoints and json.loads(entrypoints[-1]) == ["konsil"]
    runtime = stages["runtime"]
    assert any("--uid 10001" in r and "--gid 10001" in r for r in runtime.all("RUN"))
    env = " ".join(runtime.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env
    assert runtime.last("WORKDIR") == "/tmp"
    assert set(" ".join(runtime.all("EXPOSE")).split()) == {"8080", "9464"}
    labels = " ".join(runtime.all("LABEL"))
    assert "org.opencontainers.image.title=" in labels and "org.opencontainers.image.version=" in labels


def test_media_node_adds_coturn_from_debian_and_nothing_else(stages: dict[str, Stage]) -> None:
    node = stages["media-node"]
    assert node.base == "runtime"
    [install] = node.all("RUN")
    assert "apt-get install -y --no-install-recommends coturn" in install
    assert install.rstrip().endswith("rm -rf /var/lib/apt/lists/*")
    assert set(" ".join(node.all("EXPOSE")).split()) == {"3478/udp", "3478/tcp", "5349/tcp"}
    # Root only for the install: the USER before it is root, the one after is 10001.
    order = [(name, args) for name, args in node.instructions if name in {"USER", "RUN"}]
    assert order == [("USER", "root"), ("RUN", install), ("USER", "10001:10001")]
    assert "coturn" not in " ".join(stages["runtime"].all("RUN"))


def test_no_secret_in_the_recipe(dockerfile: str) -> None:
    for line in dockerfile.splitlines():
        if line.startswith(("ENV", "ARG", "LABEL")) or line.startswith("    "):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|_KEY)\w*=", line, re.IGNORECASE), line
    assert "KONSIL_REGIONS__" not in dockerfile
    assert "--mount=type=secret" not in dockerfile, "the build needs no secret"


def test_dockerignore_keeps_the_context_small_and_private() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (
        ".venv",
        ".git",
        "tests",
        ".konsil",
        "**/node_modules",
        "**/__pycache__",
        ".mypy_cache",
        "*.egg-info",
    ):
        assert needed in patterns, needed
    # What the build copies is not ignored.
    for copied in ("pyproject.toml", "README.md", "platform", "regions", "tenants", "media_nodes", "compliance"):
        assert copied not in patterns
