"""``konsil media-nodes …``: ops commands for a region's media nodes. Cordons are
``media_nodes/cordons.py``, the same actions as the ops API's; every replica's
registry follows them within seconds."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from konsil.media_nodes import cordons
from konsil.media_nodes.ops_api import node_views
from konsil.platform.core.settings import ConfigError, load_settings
from konsil.regions.container import open_region


async def _cordons(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    region = settings.region(args.region)
    async with open_region(settings, region):
        if args.nodes_command in ("cordon", "drain"):
            drain = args.nodes_command == "drain"
            await cordons.cordon(region.id, args.node, args.reason, drain=drain, new_node=args.new_node)
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
            lifted = await cordons.uncordon(region.id, args.node)
            if lifted:
                print(f"media node {args.node} in region {region.id}: takes new calls again")
            else:
                print(f"media node {args.node} in region {region.id}: was not cordoned (takes new calls)")
        else:
            listed = await cordons.cordons()
            for cordon in listed:
                print(f"{cordon.node_id}\tcordoned {cordon.cordoned_at:%Y-%m-%d %H:%M} UTC\t{cordon.reason}")
            if not listed:
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
            command.add_argument(
                "--new-node",
                action="store_true",
                help="the region has not heard from this node yet (cordon it before it joins)",
            )
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
    except cordons.UnknownNode as exc:
        hint = " (--new-node cordons a node before it joins)" if args.nodes_command != "uncordon" else ""
        print(f"konsil: {exc}{hint}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"konsil: {type(exc).__name__}: {exc.strerror or exc}", file=sys.stderr)
        return 1
