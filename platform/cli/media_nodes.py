"""``konsil media-nodes …``: ops commands for a region's media nodes. Cordons are
kept in the region database, which every replica's registry follows within seconds."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from konsil.media_nodes.ops_api import node_views
from konsil.media_nodes.tables import MediaNodeCordon
from konsil.platform.core.settings import ConfigError, load_settings
from konsil.regions.container import open_region


async def _cordons(args: argparse.Namespace) -> int:

    settings = load_settings(args.config)
    region = settings.region(args.region)
    async with open_region(settings, region):
        if args.nodes_command in ("cordon", "drain"):
            drain = args.nodes_command == "drain"
            found = await MediaNodeCordon.exists().where(MediaNodeCordon.node_id == args.node).run()
            if found:
                await (
                    MediaNodeCordon.update({MediaNodeCordon.reason: args.reason[:200], MediaNodeCordon.drain: drain})
                    .where(MediaNodeCordon.node_id == args.node)
                    .run()
                )
            else:
                await MediaNodeCordon.insert(
                    MediaNodeCordon(node_id=args.node, reason=args.reason[:200], drain=drain)
                ).run()
            if drain:
                print(f"media node {args.node} in region {region.id}: draining (no new calls; `list` shows when empty)")
            else:
                print(f"media node {args.node} in region {region.id}: cordoned (no new calls; its calls go on)")
        elif args.nodes_command == "list":
            views = await node_views(None)
            for view in views:
                seen = "never" if view.last_seen_seconds_ago is None else f"{view.last_seen_seconds_ago:.0f} s ago"
                print(
                    f"{view.node_id}\t{view.status}\t{view.allocations} allocations\t"
                    f"{view.relayed_kbps:.0f} kbps\t{view.restarts} restarts\tseen {seen}\t{view.reason}"
                )
            if not views:
                print(f"no media nodes known in region {region.id}")
        elif args.nodes_command == "uncordon":
            await MediaNodeCordon.delete().where(MediaNodeCordon.node_id == args.node).run()
            print(f"media node {args.node} in region {region.id}: takes new calls again")
        else:
            rows = await MediaNodeCordon.select().order_by(MediaNodeCordon.node_id).run()
            for row in rows:
                print(f"{row['node_id']}\tcordoned {row['cordoned_at']:%Y-%m-%d %H:%M} UTC\t{row['reason']}")
            if not rows:
                print(f"no cordoned media nodes in region {region.id}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="konsil media-nodes", description="ops: a region's media nodes")
    nodes = top.add_subparsers(dest="nodes_command", required=True)
    for name, text in (
        ("cordon", "give a node no new calls"),
        ("drain", "give a node no new calls and watch its calls end"),
        ("uncordon", "let a node take calls again"),
    ):
        command = nodes.add_parser(name, help=text)
        command.add_argument("node")
        if name != "uncordon":
            command.add_argument("--reason", default="", help="why (shown in the list)")
    nodes.add_parser("cordons", help="list cordoned nodes")
    nodes.add_parser("list", help="every node the region knows, with its state and load")
    for command in nodes.choices.values():
        command.add_argument("--region", required=True)
        command.add_argument("--config", help="TOML configuration file (default: $KONSIL_CONFIG)")
    return top


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    try:
        return asyncio.run(_cordons(args))
    except ConfigError as exc:
        print(f"konsil: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"konsil: {type(exc).__name__}: {exc.strerror or exc}", file=sys.stderr)
        return 1
