"""Run every benchmark in bench/ and print one JSON document.

    .venv/bin/python -m bench              # all benchmarks, default settings
    .venv/bin/python -m bench --list       # their names
    .venv/bin/python -m bench gateway_vs_direct -- --database sqlite
    .venv/bin/python -m bench --check      # exit 1 if a benchmark misses its aim

A benchmark is a module in this folder that defines ``NAME`` and ``run(argv) -> dict``.
Arguments after ``--`` are passed to every selected benchmark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import pkgutil
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import bench
from bench.harness import emit, machine

NOT_BENCHMARKS = {"harness", "__main__"}


def discover() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in NOT_BENCHMARKS:
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if hasattr(module, "NAME") and callable(getattr(module, "run", None)):
            found[module.NAME] = module
    return found


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passed: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passed = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(prog="python -m bench", description="Run Konsil's benchmarks; print JSON.")
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--check", action="store_true", help="exit 1 when a benchmark misses its aim")
    args = p.parse_args(argv)
    benchmarks = discover()
    if args.list:
        for name, module in benchmarks.items():
            print(f"{name}: {(module.__doc__ or '').strip().splitlines()[0]}")
        return 0
    unknown = set(args.names) - set(benchmarks)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(benchmarks)}")
    selected = args.names or list(benchmarks)
    started = time.monotonic()
    report: dict[str, Any] = {
        "suite": "konsil-bench",
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "machine": machine(),
        "results": [],
    }
    failed = False
    for name in selected:
        print(f"[bench] === {name}", file=sys.stderr, flush=True)
        try:
            report["results"].append(benchmarks[name].run(passed))
        except KeyboardInterrupt:
            print("[bench] interrupted; servers stopped and databases dropped", file=sys.stderr)
            return 130
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            report["results"].append({"benchmark": name, "error": f"{type(exc).__name__}: {exc}"})
            failed = True
    report["seconds"] = round(time.monotonic() - started, 1)
    emit(report)
    if failed:
        return 1
    if args.check and any(r.get("meets_aim") is False for r in report["results"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
