"""Reading the configuration: a TOML file plus ``KONSIL_*`` environment overrides, and
turning a part of it into a typed object with one clear line on any problem.

Each process type reads only the parts it needs into its own type: a region process
``settings.Settings`` (``for_region``), the control plane ``settings.ControlPlaneSettings``
(no region database or key credentials), a media node ``media_nodes.agent_settings``
(no database, no tenant keys). They share this reader so that one file, and one set of
environment overrides, serves them all.

Environment overrides use ``__`` for nesting; a region is addressed by its id:
``KONSIL_CONTROL__DATABASE=…``, ``KONSIL_REGIONS__EU__DATABASE=…``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class ConfigError(Exception):
    """One clear line naming the offending key."""


_PATH_RE = re.compile(r"at `\$((?:\.[A-Za-z_]+|\[\d+\])*)`")


def describe(error: msgspec.ValidationError, raw: Mapping[str, Any], prefix: str = "") -> str:
    """msgspec's message as ``key.path: what is wrong``, regions named by id, under
    ``prefix`` when ``raw`` is a part of the file (``regions.eu``, say)."""
    text = str(error)
    match = _PATH_RE.search(text)
    message = _PATH_RE.sub("", text).rstrip(" -")
    if not match:
        return f"{prefix or 'configuration'}: {message}"
    key = match.group(1).lstrip(".")
    # Missing and unknown fields name the key in the message; put it in the path.
    field = re.match(r"Object (?:missing required|contains unknown) field `([^`]+)`", message)
    if field:
        key = f"{key}.{field.group(1)}" if key else field.group(1)
    # Name regions by id rather than list index, as operators write them.
    regions = raw.get("regions") or []

    def region_name(m: re.Match[str]) -> str:
        index = int(m.group(1))
        if index < len(regions) and isinstance(regions[index], Mapping) and "id" in regions[index]:
            return f"regions.{regions[index]['id']}"
        return f"regions[{index}]"

    key = re.sub(r"^regions\[(\d+)\]", region_name, key)
    if prefix:
        key = f"{prefix}.{key}" if key else prefix
    return f"{key}: {message}"


def convert(raw: Mapping[str, Any], kind: type[T], prefix: str = "") -> T:
    """``raw`` as ``kind``; ConfigError naming the key on any problem."""
    try:
        return msgspec.convert(raw, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(describe(exc, raw, prefix)) from None


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith("KONSIL_") or name in {"KONSIL_CONFIG"}:
            continue
        parts = [p.lower() for p in name[len("KONSIL_") :].split("__")]
        if parts[0] == "regions":
            if len(parts) < 3:
                raise ConfigError(f"{name}: use KONSIL_REGIONS__<ID>__<KEY>")
            regions = raw.setdefault("regions", [])
            target = next((r for r in regions if r.get("id") == parts[1]), None)
            if target is None:
                target = {"id": parts[1]}
                regions.append(target)
            node: dict[str, Any] = target
            keys = parts[2:]
        else:
            node = raw
            keys = parts
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {key} is not a section")
        node[keys[-1]] = value


def read_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The configuration as plain data: the file (``path``, else ``$KONSIL_CONFIG``, else
    none) with the environment's overrides applied. Not validated: each process type
    validates the part it reads."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("KONSIL_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    _apply_env(raw, environ)
    return raw
