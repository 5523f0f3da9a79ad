"""Region tables of the media-node area: ops' cordons. A cordoned node keeps
relaying its calls but is given no new ones; every replica's registry follows this
table, so one command reaches them all."""

from __future__ import annotations

from piccolo.columns import Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class MediaNodeCordon(Table, tablename="media_node_cordon"):
    node_id = Varchar(length=63, primary_key=True)
    reason = Varchar(length=200, default="")
    cordoned_at = Timestamptz(default=TimestamptzNow())


MEDIA_NODE_TABLES: list[type[Table]] = [MediaNodeCordon]
