"""Region tables of the media-node area: the registry's view of each node, and ops'
cordons. A cordoned node keeps relaying its calls but is given no new ones; every
replica's registry follows the cordon table, so one command reaches them all. Every
replica writes what it has heard from the nodes to ``media_node`` (the newest heartbeat
wins), so ops tools see the region's nodes and a restarted replica knows each node's
replay mark."""

from __future__ import annotations

from piccolo.columns import BigInt, Boolean, Integer, Real, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class MediaNode(Table, tablename="media_node"):
    node_id = Varchar(length=63, primary_key=True)
    state = Varchar(length=10)  # active | draining | left
    healthy = Boolean(default=False)
    allocations = Integer(default=0)
    relayed_kbps = Real(default=0.0)
    restarts = Integer(default=0)
    turn_urls = Text(default="[]")  # JSON list of the node's turn:/turns: URLs
    last_seq = BigInt(default=0)  # the newest heartbeat's sequence number (replay mark)
    last_seen_at = Timestamptz(default=TimestamptzNow())


class MediaNodeCordon(Table, tablename="media_node_cordon"):
    node_id = Varchar(length=63, primary_key=True)
    reason = Varchar(length=200, default="")
    # A drain is a cordon that ops watch until the node's calls have ended.
    drain = Boolean(default=False)
    cordoned_at = Timestamptz(default=TimestamptzNow())


MEDIA_NODE_TABLES: list[type[Table]] = [MediaNode, MediaNodeCordon]
