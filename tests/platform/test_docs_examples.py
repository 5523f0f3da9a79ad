"""The documentation cannot rot: every example configuration in the README is read by the
real loaders (the one each process kind uses, and ``konsil check-config``), the
services-mode example keeps every part an operator needs, and every ``konsil …`` command
the README and docs/ show (with its options) exists in the command's parsers."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from konsil.media_nodes import agent
from konsil.media_nodes.agent_settings import load_agent_settings
from konsil.platform.cli import dsr as dsr_cli
from konsil.platform.cli import main as cli
from konsil.platform.cli import media_nodes as media_nodes_cli
from konsil.platform.core.settings import load_control_settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
# The first line of a media node's own file in the README: read by the agent's loader.
NODE_FILE = "# A media node's own file"


def toml_blocks(path: Path) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", path.read_text(), re.S | re.M)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "konsil.toml"
    path.write_text(text)
    return path


def test_the_readme_has_a_services_example_and_a_media_node_file() -> None:
    blocks = toml_blocks(README)
    assert any(b.startswith(NODE_FILE) for b in blocks), "README: a media node's own file"
    assert any('mode = "services"' in b for b in blocks), "README: a services-mode example"


@pytest.mark.parametrize("block", [b for b in toml_blocks(README) if not b.startswith(NODE_FILE)])
def test_each_readme_configuration_is_read_by_every_process_kind(
    block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("KONSIL_")]:
        monkeypatch.delenv(name)
    path = write(tmp_path, block)
    settings = load_settings(path, environ={})
    raw = tomllib.loads(block)
    if "control" in raw:
        assert load_control_settings(path, environ={}).control.public_url == settings.require_control().public_url
    for region in settings.regions:
        assert settings.for_region(region.id).regions == [region]
        if region.broker_url and region.media_node_key:  # a media node may run off the same file
            assert load_agent_settings(path, region.id, environ={}).broker_url == region.broker_url
    # What an operator runs, with its own output.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["check-config", "--config", str(path)]) == 0
    assert "configuration is valid" in out.getvalue()


def test_the_services_example_holds_every_part_of_a_region() -> None:
    """The issue's list: an operator who copies the example misses nothing."""
    block = next(b for b in toml_blocks(README) if 'mode = "services"' in b)
    raw = tomllib.loads(block)
    assert {"telemetry", "control"} <= raw.keys()
    region = raw["regions"][0]
    for key in ("broker_url", "media_node_key", "ops_token_hashes", "lifecycle", "smtp", "vault"):
        assert key in region, f"README example: regions.{region['id']}.{key}"
    assert region.get("turn_secret") or region["vault"].get("turn_secret_path"), "README example: the TURN secret"


def test_the_readmes_media_node_file_is_read_by_the_agent(tmp_path: Path) -> None:
    block = next(b for b in toml_blocks(README) if b.startswith(NODE_FILE))
    region_id = tomllib.loads(block)["regions"][0]["id"]
    node = load_agent_settings(write(tmp_path, block), region_id, environ={})
    assert node.turn_secret or node.turn_secret_in_vault is not None


# --- commands ---------------------------------------------------------------------------

WORD = re.compile(r"^[a-z][a-z0-9-]*(?:\\?\|[a-z][a-z0-9-]*)*\Z")
STOP = {"|", "||", "&&", ";", ">", "2>&1", "<"}
COMMAND = re.compile(r"(?:^|(?<=[\s`(/$]))konsil (.+)$")


def code_lines(path: Path) -> Iterator[str]:
    """The lines of fenced blocks and the inline code spans of a Markdown file."""
    text = path.read_text()
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        yield from block.splitlines()
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.S | re.M)
    yield from re.findall(r"`([^`\n]+)`", prose)


def mentions(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    """Each ``konsil …`` in the code of ``path``: its (sub)command words and its options."""
    for line in code_lines(path):
        for found in COMMAND.finditer(line):
            tokens = found.group(1).split()
            words: list[str] = []
            while tokens and WORD.match(tokens[0]):
                words.append(tokens.pop(0))
            options: list[str] = []
            for token in tokens:
                if token in STOP or token.startswith("#"):
                    break
                for part in re.split(r"\\?\|", token.strip("[]()…")):
                    if part.startswith("--"):
                        options.append(part.split("=", 1)[0].rstrip("]),…"))
            if words:
                yield words, options


def every_mention() -> list[tuple[str, list[str], list[str]]]:
    return [(path.name, words, options) for path in DOCS for words, options in mentions(path)]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def first_choices(parser: argparse.ArgumentParser) -> list[str] | None:
    for action in parser._actions:
        if not action.option_strings and action.choices is not None and action.dest != "help":
            return [str(c) for c in action.choices]
    return None


DELEGATED_PARSERS = {"media-nodes": media_nodes_cli.parser, "dsr": dsr_cli.parser}


def help_of(argv: list[str]) -> str:
    """The agent builds its parser inside ``main``: ask it for its help text."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        agent.main([*argv, "--help"])
    assert done.value.code == 0, f"konsil media-node {' '.join(argv)}: no such command"
    return out.getvalue()


def leaves(parser: argparse.ArgumentParser, words: list[str], said: str) -> list[argparse.ArgumentParser]:
    """The parsers ``words`` lead to (``a|b`` is both); fails naming a word that is no command."""
    if not words:
        return [parser]
    first, rest = words[0], words[1:]
    found: list[argparse.ArgumentParser] = []
    for alternative in re.split(r"\\?\|", first):
        choices = subcommands(parser)
        if choices is not None:
            assert alternative in choices, f"{said}: {alternative!r} is not one of {sorted(choices)}"
            found += leaves(choices[alternative], rest, said)
        else:
            allowed = first_choices(parser)
            if allowed is not None:
                assert alternative in allowed, f"{said}: {alternative!r} is not one of {allowed}"
            found.append(parser)  # the rest are arguments
    return found


@pytest.mark.parametrize(
    ("where", "words", "options"),
    every_mention(),
    ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
)
def test_every_documented_command_exists(where: str, words: list[str], options: list[str]) -> None:
    said = f"{where}: konsil {' '.join(words)}"
    if words[0] == "media-node":
        text = help_of(words[1:2])
        for option in options:
            assert re.search(rf"{re.escape(option)}\b", text), f"{said}: no option {option}"
        return
    if words[0] in DELEGATED_PARSERS:
        parsers = leaves(DELEGATED_PARSERS[words[0]](), words[1:], said)
    else:
        parsers = leaves(cli.parser(), words, said)
    for option in options:
        assert any(option in parser._option_string_actions for parser in parsers), f"{said}: no option {option}"


def test_the_docs_show_the_operators_commands() -> None:
    """The commands an operator needs are each documented somewhere (the table of the README)."""
    shown = {" ".join(words[:2]) for _, words, _ in every_mention()} | {words[0] for _, words, _ in every_mention()}
    for command in (
        "up",
        "serve",
        "migrate",
        "check-config",
        "worker",
        "beat",
        "purge",
        "dsr",
        "org delete",
        "keys rotate",
        "keys rotate-signing",
        "media-node run",
        "media-nodes",
        "audit",
        "report",
    ):
        assert command in shown, f"the docs never show konsil {command}"
