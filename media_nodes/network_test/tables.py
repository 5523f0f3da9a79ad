"""Region tables of the network test: results kept as support metadata (P10).

A result is deliberately unlinkable to a visit: no visit, call, member or token id,
no name, phone or network address. It keeps the organisation whose page ran the
test (not personal data), when, over which transport (or the direct path), the figures, the verdict,
and the browser's family, major version and language if the browser sent them.
The support-metadata purge deletes rows by ``created_at`` after 9 months."""

from __future__ import annotations

from piccolo.columns import UUID, Integer, Real, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class NetworkTestResult(Table, tablename="network_test_result"):
    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
    runner = Varchar(length=8)  # visitor | member: who ran it, never which one
    transport = Varchar(length=6)  # udp | tcp | direct (a region without relays)
    verdict = Varchar(length=16)  # good | may be unstable | cannot connect | unavailable | not measured
    reason = Varchar(length=24, null=True, default=None)  # why it could not connect
    connect_ms = Real(null=True, default=None)
    rtt_ms = Real(null=True, default=None)
    jitter_ms = Real(null=True, default=None)
    loss_percent = Real(null=True, default=None)
    throughput_kbps = Real(null=True, default=None)
    probes_sent = Integer(default=0)
    probes_answered = Integer(default=0)
    browser = Varchar(length=12, null=True, default=None)  # a family from a fixed list
    browser_version = Integer(null=True, default=None)  # major version only
    language = Varchar(length=35, null=True, default=None)  # a BCP 47 tag, validated


NETWORK_TEST_TABLES: list[type[Table]] = [NetworkTestResult]
