"""The relay load the agent reads from coturn's log (lines as coturn 4.6 writes them with
``verbose`` and ``simple-log``); coturn itself relays in tests/e2e/test_media_node_agent.py."""

from __future__ import annotations

from pathlib import Path

from konsil.media_nodes.coturn import _LogReader

SESSION = "001000000000000002"


def line(uptime: int, text: str) -> str:
    return f"{uptime}: : session {SESSION}: {text}\n"


def peer_usage(uptime: int, sent: int) -> str:
    return line(uptime, f"peer usage: realm=<konsil>, username=<1795926973:ref>, rp=0, rb=0, sp=2048, sb={sent}")


def test_a_session_rate_is_measured_between_its_reports_and_ends_with_it(tmp_path: Path) -> None:
    log = tmp_path / "turn.log"
    reader = _LogReader(log, started=1000.0)
    log.write_text(line(10, "new, realm=<konsil>, username=<1795926973:ref>, lifetime=600"))
    reader.poll(1011.0)
    assert (reader.load(1011.0).allocations, reader.load(1011.0).relayed_kbps) == (1, 0), "no report yet"
    with log.open("a") as handle:
        handle.write(peer_usage(18, 2_000_000))  # 2 MB in the 8 s since the allocation
    reader.poll(1019.0)
    assert reader.load(1019.0).relayed_kbps == 2_000_000 * 8 / 1000 / 8  # 2000 kbit/s
    # The next report is late: the session relays less, at most 2 MB over the time since.
    assert reader.load(1038.0).relayed_kbps == 2_000_000 * 8 / 1000 / 20
    with log.open("a") as handle:
        handle.write(peer_usage(40, 500_000))
        handle.write(line(40, "delete: realm=<konsil>, username=<1795926973:ref>"))
    reader.poll(1041.0)
    assert (reader.load(1041.0).allocations, reader.load(1041.0).relayed_kbps) == (0, 0), "ended: no load"
