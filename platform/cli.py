"""The ``konsil`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

from konsil.platform.migrations import MigrationError
from konsil.platform.settings import ConfigError, Settings, load_settings


def _serve(args: argparse.Namespace) -> int:
    from konsil.platform.http_server import serve

    settings = load_settings(args.config)
    if args.what == "control":
        from konsil.platform.control.app import create_control_app

        app = create_control_app(settings)
        listen = settings.require_control().listen
    else:
        from konsil.regions.app import create_region_app

        app = create_region_app(settings, args.region)
        listen = settings.region(args.region or settings.regions[0].id).listen
    serve(app, settings, listen)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from konsil.platform.migrations import migrate_all

    migrate_all(load_settings(args.config))
    return 0


def _up(args: argparse.Namespace) -> int:
    from konsil.platform.launcher import up

    return up(args.config, args.data_dir, args.port, args.demo)


async def _verify(settings: Settings, slug: str) -> int:
    from konsil.compliance.access_log.cli import format_report
    from konsil.compliance.access_log.service import verify
    from konsil.platform import database
    from konsil.regions.tables import REGION_TABLES
    from konsil.tenants.tables import Organisation

    for region in settings.regions:
        engine = database.engine_for(region.database)
        database.bind(REGION_TABLES, engine)
        await database.start(engine)
        try:
            org = await Organisation.select(Organisation.id).where(Organisation.slug == slug).first().run()
            if org is None:
                continue
            report = await verify(org["id"])
            print(format_report(report, slug))
            return 0 if report.ok else 1
        finally:
            await database.stop(engine)
    print(f"no organisation {slug!r} in the configured region(s)", file=sys.stderr)
    return 2


def _audit_verify(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.region:
        settings = settings.for_region(args.region)
    return asyncio.run(_verify(settings, args.org))


def _regions(args: argparse.Namespace) -> tuple[Settings, list[Any]]:
    settings = load_settings(args.config)
    regions = [settings.region(args.region)] if args.region else list(settings.regions)
    return settings, regions


async def _find_org(settings: Settings, regions: list[Any], slug: str) -> Any:
    """The region holding the organisation, or None."""
    from konsil.regions.resources import open_region
    from konsil.tenants.tables import Organisation

    for region in regions:
        async with open_region(settings, region):
            if await Organisation.exists().where(Organisation.slug == slug).run():
                return region
    return None


async def _org_delete(args: argparse.Namespace) -> int:
    from konsil.regions.resources import open_region
    from konsil.tenants import organisations
    from konsil.tenants.actors import Actor
    from konsil.tenants.keys.provider import KeyUnavailable
    from konsil.tenants.tables import Organisation

    settings, regions = _regions(args)
    region = await _find_org(settings, regions, args.slug)
    if region is None:
        print(f"no organisation {args.slug!r} in the configured region(s)", file=sys.stderr)
        return 2
    if not args.yes:
        question = f"Delete organisation {args.slug!r} in region {region.id} for good? Type its slug: "
        answer = await asyncio.to_thread(input, question)
        if answer.strip() != args.slug:
            print("not deleted")
            return 1
    async with open_region(settings, region) as ctx:
        org = await Organisation.select(Organisation.id).where(Organisation.slug == args.slug).first().run()
        assert org is not None
        actor = Actor("operator:cli", "operator", "operator:cli", "local", "delete the customer account")
        try:
            await organisations.delete(ctx, actor, org["id"])
        except KeyUnavailable:
            print("the region's key service does not answer; nothing was deleted", file=sys.stderr)
            return 1
        told = await organisations.tell_control_plane(ctx, org["id"])
    print(f"organisation {args.slug!r} deleted: key destroyed (crypto-shredded), rows removed")
    if not told:
        print(
            "warning: the control plane could not be told; its directory entry is removed on the next try",
            file=sys.stderr,
        )
    return 0


async def _keys_rotate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from konsil.regions.resources import open_region
    from konsil.tenants.tables import Organisation

    settings, regions = _regions(args)
    done = 0
    for region in regions:
        async with open_region(settings, region) as ctx:
            query = Organisation.select(Organisation.id, Organisation.slug).order_by(Organisation.slug)
            if not args.all:
                query = query.where(Organisation.slug == args.org)
            orgs = await query.run()
            if not orgs:
                continue
            with Progress(transient=False) as progress:
                task = progress.add_task(f"region {region.id}: rotating", total=len(orgs))
                for org in orgs:
                    result = await ctx.keys.rotate(org["id"])
                    line = f"{org['slug']}: key version {result.key_version}, {result.rewrapped} data keys rewrapped"
                    if args.retire:
                        info = await ctx.keys.retire_old_versions(org["id"])
                        line += f", versions below {info.min_decryption_version} retired"
                    progress.console.print(line)
                    progress.advance(task)
                    done += 1
    if done == 0:
        print(
            f"no organisation {args.org!r} in the configured region(s)" if args.org else "no organisations",
            file=sys.stderr,
        )
        return 2
    return 0


def _purge(args: argparse.Namespace) -> int:
    from konsil.compliance.retention.cli import run

    return asyncio.run(run(args))


def _worker(args: argparse.Namespace) -> int:
    from konsil.regions.tasks import run_worker

    run_worker(load_settings(args.config), args.region, args.loglevel)
    return 0


def _beat(args: argparse.Namespace) -> int:
    from konsil.regions.tasks import run_beat

    run_beat(load_settings(args.config), args.region, args.loglevel)
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    print(
        f"configuration is valid: mode {settings.mode}, regions {', '.join(r.id for r in settings.regions) or 'none'}"
    )
    return 0


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
    up.set_defaults(func=_up)

    serve = with_config(sub.add_parser("serve", help="run one service process"))
    serve.add_argument("what", choices=["control", "region"])
    serve.add_argument("--region", help="region id (when the configuration names several)")
    serve.set_defaults(func=_serve)

    with_config(sub.add_parser("migrate", help="apply database migrations everywhere")).set_defaults(func=_migrate)
    with_config(sub.add_parser("check-config", help="validate the configuration")).set_defaults(func=_check)

    org = sub.add_parser("org", help="organisation tools").add_subparsers(dest="org_command", required=True)
    delete = with_config(org.add_parser("delete", help="delete an organisation: destroy its key, then its rows"))
    delete.add_argument("slug")
    delete.add_argument("--region", help="only look in this region")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=lambda a: asyncio.run(_org_delete(a)))

    keys = sub.add_parser("keys", help="per-tenant key tools").add_subparsers(dest="keys_command", required=True)
    rotate = with_config(keys.add_parser("rotate", help="rotate organisation keys and rewrap their data keys"))
    which = rotate.add_mutually_exclusive_group(required=True)
    which.add_argument("--org", help="organisation slug")
    which.add_argument("--all", action="store_true", help="every organisation of the region(s)")
    rotate.add_argument("--region", help="only this region")
    rotate.add_argument("--retire", action="store_true", help="then retire key versions no data key uses")
    rotate.set_defaults(func=lambda a: asyncio.run(_keys_rotate(a)))

    purge = with_config(sub.add_parser("purge", help="delete what is past its retention now (progress bar)"))
    purge.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    purge.add_argument("--region", help="only this region")
    purge.add_argument("--org", help="only this organisation (by slug)")
    purge.add_argument("--batch-size", type=int, choices=range(1, 10_001), metavar="1..10000", help="rows per batch")
    purge.set_defaults(func=_purge)

    for name, func, what in (
        ("worker", _worker, "run a region's Celery worker (retention purges)"),
        ("beat", _beat, "run a region's Celery beat (the purge schedule)"),
    ):
        runner = with_config(sub.add_parser(name, help=what))
        runner.add_argument("--region", required=True, help="the region whose tasks it runs")
        runner.add_argument("--loglevel", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
        runner.set_defaults(func=func)

    # Parsed by the agent itself: main() hands it everything after "media-node".
    sub.add_parser("media-node", help="run a media node: media-node run --region ID --node-id ID --config FILE")

    # Parsed by their own modules: main() hands them everything after the command.
    sub.add_parser("media-nodes", help="ops: list, cordon and drain a region's media nodes")
    sub.add_parser("dsr", help="data-subject requests: access, rectification, erasure, portability")

    audit = sub.add_parser("audit", help="access-log tools").add_subparsers(dest="audit_command", required=True)
    verify = with_config(audit.add_parser("verify", help="verify an organisation's access-log hash chain"))
    verify.add_argument("--org", required=True, help="organisation slug")
    verify.add_argument("--region", help="only look in this region")
    verify.set_defaults(func=_audit_verify)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["media-node"]:
        from konsil.media_nodes.agent import main as media_node_main

        return media_node_main(argv[1:])
    if argv[:1] == ["media-nodes"]:
        from konsil.media_nodes.ops_cli import main as media_nodes_main

        return media_nodes_main(argv[1:])
    if argv[:1] == ["dsr"]:
        from konsil.compliance.dsr.cli import main as dsr_main

        return dsr_main(argv[1:])
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
