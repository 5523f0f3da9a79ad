"""The ``konsil`` command."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import inspect
import logging
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from konsil.platform.cli.migrations import MigrationError
from konsil.platform.core.settings import ConfigError

Command = Callable[[argparse.Namespace], int]

# Commands parsed by their own module, which main() hands everything after the name.
DELEGATED = {
    "media-node": "konsil.media_nodes.agent:main",
    "media-nodes": "konsil.platform.cli.media_nodes:main",
    "dsr": "konsil.platform.cli.dsr:main",
}


def _load(target: str) -> Callable[..., Any]:
    module, name = target.split(":")
    command: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return command


def _command(target: str) -> Command:
    """A command that loads only the code of what it runs, when it runs (a media node
    needs no web server or WebRTC library, ``konsil dsr`` no Celery)."""

    def run(args: argparse.Namespace) -> int:
        result = _load(target)(args)
        return int(asyncio.run(result) if inspect.iscoroutine(result) else result)

    return run


def _check(args: argparse.Namespace) -> int:
    """``check-config``: the file, and with --connect every service (platform/cli/check_config.py)."""
    return int(_load("konsil.platform.cli.check_config:run")(args))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="konsil", description="Konsil video consultations")
    sub = top.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="TOML configuration file (default: $KONSIL_CONFIG)")
        return p

    up = with_config(sub.add_parser("up", help="run the embedded default on localhost"))
    up.add_argument("--demo", action="store_true", help="seed a demo organisation per region and print logins")
    up.add_argument("--data-dir", default=".konsil", help="where the embedded default keeps its files")
    up.add_argument("--port", type=int, default=8000, help="control plane port; regions take the next ports")
    up.set_defaults(func=_command("konsil.platform.cli.processes:up"))

    serve = with_config(sub.add_parser("serve", help="run one service process"))
    serve.add_argument("what", choices=["control", "region"])
    serve.add_argument("--region", help="region id (when the configuration names several)")
    serve.set_defaults(func=_command("konsil.platform.cli.processes:serve"))

    migrate = with_config(sub.add_parser("migrate", help="apply database migrations everywhere"))
    only = migrate.add_mutually_exclusive_group()
    only.add_argument("--region", help="only this region's database (a region's migration job)")
    only.add_argument("--control", action="store_true", help="only the control plane's database")
    migrate.set_defaults(func=_command("konsil.platform.cli.processes:migrate"))
    check = with_config(sub.add_parser("check-config", help="validate the configuration"))
    check.add_argument(
        "--connect",
        action="store_true",
        help="also connect to every service the process uses; exit 1 if any is missing",
    )
    only = check.add_mutually_exclusive_group()
    only.add_argument("--region", help="with --connect: only what this region's processes use")
    only.add_argument("--control", action="store_true", help="with --connect: only what the control plane uses")
    check.set_defaults(func=_check)

    org = sub.add_parser("org", help="organisation tools").add_subparsers(dest="org_command", required=True)
    delete = with_config(org.add_parser("delete", help="delete an organisation: destroy its key, then its rows"))
    delete.add_argument("slug")
    delete.add_argument("--region", help="only look in this region")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=_command("konsil.platform.cli.tools:org_delete"))

    keys = sub.add_parser("keys", help="per-tenant key tools").add_subparsers(dest="keys_command", required=True)
    rotate = with_config(keys.add_parser("rotate", help="rotate organisation keys and rewrap their data keys"))
    which = rotate.add_mutually_exclusive_group(required=True)
    which.add_argument("--org", help="organisation slug")
    which.add_argument("--all", action="store_true", help="every organisation of the region(s)")
    rotate.add_argument("--region", help="only this region")
    rotate.add_argument("--retire", action="store_true", help="then retire key versions no data key uses")
    rotate.set_defaults(func=_command("konsil.platform.cli.tools:keys_rotate"))
    signing = with_config(
        keys.add_parser(
            "rotate-signing",
            help="give the region a new signing key (receipts, checkpoints, manifests); old ones stay verifiable",
        )
    )
    signing.add_argument("--region", required=True, help="the region whose signing key it rotates")
    signing.set_defaults(func=_command("konsil.platform.cli.tools:keys_rotate_signing"))

    purge = with_config(sub.add_parser("purge", help="delete what is past its retention now (progress bar)"))
    purge.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    purge.add_argument("--region", help="only this region")
    purge.add_argument("--org", help="only this organisation (by slug)")
    purge.add_argument("--batch-size", type=int, choices=range(1, 10_001), metavar="1..10000", help="rows per batch")
    purge.set_defaults(func=_command("konsil.platform.cli.retention:run"))

    for name, func, what in (
        ("worker", _command("konsil.platform.cli.processes:worker"), "run a region's Celery worker (retention purges)"),
        ("beat", _command("konsil.platform.cli.processes:beat"), "run a region's Celery beat (the purge schedule)"),
    ):
        runner = with_config(sub.add_parser(name, help=what))
        runner.add_argument("--region", required=True, help="the region whose tasks it runs")
        runner.add_argument("--loglevel", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
        runner.set_defaults(func=func)

    alive = with_config(
        sub.add_parser("alive", help="liveness probe of a region's worker or beat: exit 1 if its loop stopped")
    )
    alive.add_argument("kind", choices=["worker", "beat"])
    alive.add_argument("--region", required=True, help="the region of the worker or beat")
    alive.add_argument(
        "--max-age", type=float, default=90.0, help="seconds since the loop last turned, at most (default 90)"
    )
    alive.add_argument(
        "--max-task-seconds",
        type=float,
        default=21600.0,
        help="seconds one task may run, at most (default 21600: a long purge keeps the loop busy)",
    )
    alive.set_defaults(func=_command("konsil.platform.cli.alive:run"))

    # Parsed by the agent itself: main() hands it everything after "media-node".
    sub.add_parser("media-node", help="run a media node: media-node run --region ID --node-id ID --config FILE")

    # Parsed by their own modules: main() hands them everything after the command.
    sub.add_parser("media-nodes", help="ops: list, cordon and drain a region's media nodes")
    sub.add_parser("dsr", help="data-subject requests: access, rectification, erasure, portability")

    audit = sub.add_parser("audit", help="access-log tools").add_subparsers(dest="audit_command", required=True)

    def org_options(p: argparse.ArgumentParser) -> None:
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--org", help="organisation slug (also of a removed organisation)")
        which.add_argument("--org-id", type=uuid.UUID, help="organisation id (also of a removed organisation)")
        p.add_argument("--region", help="only look in this region")

    verify = with_config(audit.add_parser("verify", help="verify an organisation's access-log hash chain"))
    org_options(verify)
    verify.add_argument(
        "--since-checkpoint",
        metavar="FILE",
        help="a checkpoint kept earlier (konsil audit checkpoint): prove today's log extends it",
    )
    verify.set_defaults(func=_command("konsil.platform.cli.audit:verify"))
    sign = with_config(audit.add_parser("checkpoint", help="sign a checkpoint of an organisation's access log"))
    org_options(sign)
    sign.add_argument("--out", metavar="FILE", help="save it to this new file instead of printing it")
    sign.set_defaults(func=_command("konsil.platform.cli.audit:checkpoint"))
    show = with_config(audit.add_parser("certificate", help="show a removed organisation's deletion certificate"))
    org_options(show)
    show.add_argument("--out", metavar="FILE", help="save it to this file instead of printing it")
    show.set_defaults(func=_command("konsil.platform.cli.audit:certificate"))

    mail = sub.add_parser("mail", help="e-mails to members").add_subparsers(dest="mail_command", required=True)
    news = with_config(
        mail.add_parser("feature-news", help="mail news about a feature to the members who agreed to feature e-mails")
    )
    news.add_argument("--region", required=True, help="the region whose members get it")
    news.add_argument("--org", help="only this organisation (slug)")
    news.add_argument("--subject-file", required=True, metavar="FILE", help="the subject: one line")
    news.add_argument("--body-file", required=True, metavar="FILE", help="the text: paragraphs between blank lines")
    news.add_argument("--dry-run", action="store_true", help="only count who would get it")
    news.set_defaults(func=_command("konsil.platform.cli.mail:feature_news"))

    report = with_config(sub.add_parser("report", help="make a compliance report (GDPR, HIPAA, NEN 7510, Normen)"))
    org_options(report)
    report.add_argument("--framework", required=True, choices=["gdpr", "hipaa", "nen7510", "normen"])
    report.add_argument("--from", dest="period_from", required=True, type=_date, help="first day (YYYY-MM-DD)")
    report.add_argument("--to", dest="period_to", required=True, type=_date, help="last day, included (YYYY-MM-DD)")
    report.add_argument(
        "--format", required=True, choices=["pdf", "json", "csv", "zip", "ropa", "oscal"], help="the file to write"
    )
    report.add_argument("--out", metavar="FILE", help="where to write it (default: named after org, framework, period)")
    report.set_defaults(func=_command("konsil.platform.cli.report:run"))
    return top


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in DELEGATED:
        return int(_load(DELEGATED[argv[0]])(argv[1:]))
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"konsil: configuration error: {exc}", file=sys.stderr)
        return 2
    except MigrationError as exc:
        print(f"konsil: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a database that does not answer
        print(f"konsil: {type(exc).__name__}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
