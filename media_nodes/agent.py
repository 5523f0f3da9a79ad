"""The media node agent (``konsil media-node run``): runs and supervises coturn and
tells the region's registry, through signed heartbeats on the region's RabbitMQ, that
the node is there, how loaded and whether healthy it is.

Two threads: the supervisor checks coturn every half second (restarting it when it has
died) and reads its load; the publisher owns the pika connection (pika is not
thread-safe) and publishes a heartbeat every ``heartbeat_seconds``, reconnecting after a
broker loss. A heartbeat's ``healthy`` is false when coturn was down at any moment since
the previous heartbeat, so a crash followed by a quick restart is still reported; a crash
also triggers an immediate heartbeat.

A killed agent leaves no coturn behind: the kernel stops coturn with the agent where
Linux allows it (``prctl(PR_SET_PDEATHSIG)``), and else the next agent of the same
working directory (by default one per region and node id, see ``default_workdir``)
finds the leftover by coturn's pid file and stops it before starting its own.

Draining: the node announces ``draining`` (the registry then gives it no new calls; coturn
itself keeps relaying the calls it has), waits until its allocations reach zero or a
timeout, announces ``leaving``, and stops coturn.

The agent holds only its own settings (``agent_settings.AgentSettings``): region id,
broker, heartbeat key and the TURN secret, which ``main`` takes from the configuration
or reads from the region's Vault KV before starting; the agent hands it to coturn.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import pika
import pika.exceptions

from konsil.media_nodes import heartbeat
from konsil.media_nodes.agent_settings import load_agent_settings
from konsil.media_nodes.coturn import CoturnConfig, CoturnError, CoturnProcess
from konsil.media_nodes.turn_secret import read_from_vault
from konsil.platform.core.config import ConfigError
from konsil.platform.core.keys.provider import KeyUnavailable
from konsil.platform.core.telemetry import message_span
from konsil.platform.core.telemetry.setup import setup as setup_telemetry

log = logging.getLogger("konsil.media_nodes.agent")

_NODE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SUPERVISE_SECONDS = 0.5
# Everything but 127.0.0.0/8: with loopback peers allowed, the relay reaches nothing else.
LOOPBACK_ONLY_DENIED = ("0.0.0.0-126.255.255.255", "128.0.0.0-255.255.255.255")


class AgentError(Exception):
    """The agent cannot run as configured (one line, names no secret)."""


def default_workdir(region_id: str, node_id: str) -> Path:
    """The agent's working directory when none is given: the same for every start of one
    node, so a restarted agent finds the pid file of a coturn it left behind. Private
    (0700) and ours; refused if someone else made it first."""
    path = Path(tempfile.gettempdir()) / f"konsil-media-node-{os.getuid()}-{region_id}-{node_id}"
    path.mkdir(mode=0o700, exist_ok=True)
    found = path.lstat()
    if not path.is_dir() or path.is_symlink() or found.st_uid != os.getuid():
        raise AgentError(f"working directory {path} is not a directory of this user; give --workdir")
    path.chmod(0o700)
    return path


class NodeAgent:
    def __init__(
        self,
        region_id: str,
        node_id: str,
        broker_url: str,
        media_node_key: str,
        turn_secret: str,
        public_host: str,
        listen_ip: str,
        port: int,
        relay_ports: tuple[int, int],
        heartbeat_seconds: float = 2.0,
        *,
        relay_ip: str | None = None,
        external_ip: str | None = None,
        realm: str = "konsil",
        allow_loopback_peers: bool = False,
        denied_peer_ranges: Sequence[str] = (),
        workdir: str | Path | None = None,
        drain_timeout: float = 600.0,
        tls_port: int | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
    ) -> None:
        if not _NODE_ID.match(node_id):
            raise AgentError(f"node id {node_id!r}: use 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
        if not broker_url:
            raise AgentError("broker_url is empty")
        if not media_node_key:
            raise AgentError("media_node_key is empty")
        self.region_id = region_id
        self.node_id = node_id
        self.broker_url = broker_url
        self._key = media_node_key
        self.heartbeat_seconds = heartbeat_seconds
        self.drain_timeout = drain_timeout
        try:
            self.config = CoturnConfig(
                listening_ip=listen_ip,
                listening_port=port,
                static_auth_secret=turn_secret,
                realm=realm,
                relay_ip=relay_ip,
                external_ip=external_ip,
                min_port=relay_ports[0],
                max_port=relay_ports[1],
                allow_loopback_peers=allow_loopback_peers,
                denied_peer_ranges=tuple(denied_peer_ranges),
                tls_port=tls_port,
                tls_cert_file=tls_cert_file,
                tls_key_file=tls_key_file,
            )
        except CoturnError as exc:
            raise AgentError(str(exc)) from None
        self.turn_urls = self.config.turn_urls(public_host)
        self.coturn = CoturnProcess(self.config, workdir or default_workdir(region_id, node_id), die_with_parent=True)
        self.reaped: int | None = None  # the pid of a coturn left by a killed agent, stopped at start
        self.restarts = 0
        self.published = 0
        self.state: heartbeat.HeartbeatState = "active"
        self._lock = threading.Lock()
        self._down_since_beat = False
        self._publish_now = threading.Event()
        self._stop = threading.Event()
        self._draining_announced = threading.Event()
        self._left = threading.Event()
        self._drain_requested = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connection: pika.BlockingConnection | None = None
        # Milliseconds since the epoch: a restarted agent continues above its last
        # sequence number, so the registry's replay marks never lock it out.
        self._seq = int(time.time() * 1000)
        self._next_restart = 0.0
        self._restart_backoff = SUPERVISE_SECONDS

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.reaped = self.coturn.reap_leftover()
        if self.reaped is not None:
            log.warning("node %s: stopped coturn pid %d left running by a previous agent", self.node_id, self.reaped)
        self.coturn.start()
        port = self.config.listening_port
        log.info("node %s: coturn started (pid %s) on port %d", self.node_id, self.coturn.pid, port)
        for target, name in ((self._supervise, "supervisor"), (self._publish_loop, "heartbeats")):
            thread = threading.Thread(target=target, name=f"konsil-node-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def drain(self, timeout: float | None = None) -> None:
        """Stop taking calls, wait for the allocations to end (or ``timeout``), leave."""
        timeout = self.drain_timeout if timeout is None else timeout
        with self._lock:
            if self.state != "active":
                return
            self.state = "draining"
        log.info("node %s draining", self.node_id)
        self._publish_now.set()
        confirm_seconds = max(5.0, 2 * self.heartbeat_seconds)
        # The registry must hear "draining" before "leaving", even with nothing to wait for.
        if not self._draining_announced.wait(timeout=confirm_seconds):
            log.warning("node %s: the draining heartbeat was not confirmed by the broker", self.node_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.coturn.load().allocations == 0 or not self.coturn.is_alive():
                break
            time.sleep(SUPERVISE_SECONDS)
        with self._lock:
            self.state = "leaving"
        self._publish_now.set()
        if not self._left.wait(timeout=confirm_seconds):
            log.warning("node %s: the leaving heartbeat was not confirmed by the broker", self.node_id)
        self.close()

    def close(self) -> None:
        """Stop at once (no draining)."""
        self._stop.set()
        self._publish_now.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        self.coturn.stop()

    def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT, then drain."""

        def request_drain(signum: int, frame: FrameType | None) -> None:
            self._drain_requested.set()

        previous = {sig: signal.signal(sig, request_drain) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not self._drain_requested.wait(timeout=1.0):
                pass
            self.drain()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()

    @property
    def healthy(self) -> bool:
        with self._lock:
            return self.coturn.is_alive() and not self._down_since_beat

    # -- supervisor thread -------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_SECONDS):
            with self._lock:
                leaving = self.state == "leaving"
            if leaving or self.coturn.is_alive():
                continue
            with self._lock:
                first_failure = not self._down_since_beat
                self._down_since_beat = True
            if first_failure:
                log.warning("node %s: coturn is down; restarting", self.node_id)
                self._publish_now.set()
            if time.monotonic() < self._next_restart:
                continue
            try:
                self.coturn.restart()
            except CoturnError as exc:
                log.error("node %s: %s", self.node_id, exc)
                self._restart_backoff = min(self._restart_backoff * 2, 10.0)
                self._next_restart = time.monotonic() + self._restart_backoff
                continue
            self._restart_backoff = SUPERVISE_SECONDS
            with self._lock:
                self.restarts += 1
            log.info("node %s: coturn restarted (pid %s, %d restarts)", self.node_id, self.coturn.pid, self.restarts)

    # -- publisher thread --------------------------------------------------------------

    def _heartbeat(self) -> heartbeat.Heartbeat:
        load = self.coturn.load()
        with self._lock:
            alive = self.coturn.is_alive()
            healthy = alive and not self._down_since_beat
            # Reset only once coturn is back, so the next beat after a restart is healthy.
            if alive:
                self._down_since_beat = False
            self._seq += 1
            return heartbeat.Heartbeat(
                region=self.region_id,
                node_id=self.node_id,
                seq=self._seq,
                sent_at=time.time(),
                state=self.state,
                healthy=healthy,
                allocations=load.allocations,
                relayed_kbps=round(load.relayed_kbps, 3),
                turn_urls=self.turn_urls,
                restarts=self.restarts,
            )

    def _connect(self) -> pika.adapters.blocking_connection.BlockingChannel:
        params = pika.URLParameters(self.broker_url)
        params.socket_timeout = 5
        params.blocked_connection_timeout = 10
        params.connection_attempts = 1
        params.client_properties = {"connection_name": f"konsil-media-node {self.region_id}/{self.node_id}"}
        self._connection = pika.BlockingConnection(params)
        channel = self._connection.channel()
        channel.exchange_declare(exchange=heartbeat.EXCHANGE, exchange_type="topic", durable=True)
        channel.confirm_delivery()
        return channel

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                pass

    def _publish_loop(self) -> None:
        channel = None
        backoff = 0.5
        next_beat = time.monotonic()
        key = heartbeat.routing_key(self.region_id, self.node_id)
        while not self._stop.is_set():
            try:
                if channel is None:
                    channel = self._connect()
                    backoff = 0.5
                    log.info("node %s: connected to the broker", self.node_id)
                beat = self._heartbeat()
                body, signature = heartbeat.encode(self._key, beat)
                headers = {heartbeat.SIGNATURE_HEADER: signature}
                with message_span("publish", heartbeat.EXCHANGE, headers):  # telemetry (wt2): trace context
                    channel.basic_publish(
                        exchange=heartbeat.EXCHANGE,
                        routing_key=key,
                        body=body,
                        properties=pika.BasicProperties(
                            content_type="application/json",
                            delivery_mode=pika.DeliveryMode.Transient,
                            headers=headers,
                        ),
                    )
                self.published += 1
                if beat.state == "draining":
                    self._draining_announced.set()
                if beat.state == "leaving":
                    self._left.set()
                    break
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.warning("node %s: broker unavailable (%s); retrying in %.1f s", self.node_id, exc, backoff)
                self._disconnect()
                channel = None
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, 10.0)
                continue
            next_beat = time.monotonic() + self.heartbeat_seconds
            # Wait for the next beat, waking early when asked (crash, drain, stop), while
            # letting pika answer the broker's AMQP heartbeats.
            while not self._stop.is_set():
                remaining = next_beat - time.monotonic()
                if remaining <= 0 or self._publish_now.is_set():
                    break
                try:
                    assert self._connection is not None
                    self._connection.process_data_events(time_limit=min(remaining, 0.1))
                except (pika.exceptions.AMQPError, OSError):
                    channel = None
                    self._disconnect()
                    break
            self._publish_now.clear()
        self._disconnect()


def main(argv: Sequence[str] | None = None) -> int:
    """``konsil media-node run --region eu --node-id N --config FILE [...]``."""

    parser = argparse.ArgumentParser(prog="konsil media-node", description="Run a TURN media node of a region.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run coturn and publish heartbeats to the region's registry")
    run.add_argument("--region", required=True)
    run.add_argument("--node-id", required=True)
    run.add_argument("--config", help="settings file (default: $KONSIL_CONFIG)")
    run.add_argument("--public-host", default=None, help="host name browsers use (default: this host's FQDN)")
    run.add_argument("--port", type=int, default=3478)
    run.add_argument("--listen-ip", default="0.0.0.0")  # noqa: S104 - a relay listens publicly
    run.add_argument("--relay-ip", default=None)
    run.add_argument("--external-ip", default=None)
    run.add_argument("--min-port", type=int, default=49152)
    run.add_argument("--max-port", type=int, default=65535)
    run.add_argument("--heartbeat-seconds", type=float, default=2.0)
    run.add_argument("--drain-timeout", type=float, default=600.0)
    run.add_argument("--workdir", default=None)
    run.add_argument(
        "--loopback-only",
        action="store_true",
        help="tests and benchmarks on one machine: relay between loopback peers and nowhere else",
    )
    run.add_argument("--tls-cert", default=None, help="PEM certificate chain for TURN over TLS (turns:)")
    run.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    run.add_argument("--tls-port", type=int, default=5349, help="TURN over TLS port (with --tls-cert)")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"konsil media-node: {message}", file=sys.stderr)
        return 2

    try:
        settings = load_agent_settings(args.config, args.region)
    except ConfigError as exc:
        return fail(str(exc))
    turn_secret = settings.turn_secret
    if settings.turn_secret_in_vault is not None:
        try:
            turn_secret = asyncio.run(read_from_vault(settings.turn_secret_in_vault))
        except KeyUnavailable as exc:
            return fail(f"regions.{settings.region_id}: the TURN secret could not be read: {exc}")
    if not turn_secret:
        return fail(f"regions.{settings.region_id}.vault.turn_secret_path: the secret in Vault is empty")
    if bool(args.tls_cert) != bool(args.tls_key):
        return fail("--tls-cert and --tls-key go together")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    setup_telemetry(settings.telemetry, "media-node", settings.region_id)  # telemetry (wt2): [telemetry]
    try:
        agent = NodeAgent(
            region_id=settings.region_id,
            node_id=args.node_id,
            broker_url=settings.broker_url,
            media_node_key=settings.media_node_key,
            turn_secret=turn_secret,
            public_host=args.public_host or socket.getfqdn(),
            listen_ip=args.listen_ip,
            port=args.port,
            relay_ports=(args.min_port, args.max_port),
            heartbeat_seconds=args.heartbeat_seconds,
            relay_ip=args.relay_ip,
            external_ip=args.external_ip,
            workdir=args.workdir,
            drain_timeout=args.drain_timeout,
            allow_loopback_peers=args.loopback_only,
            denied_peer_ranges=LOOPBACK_ONLY_DENIED if args.loopback_only else (),
            tls_port=args.tls_port if args.tls_cert else None,
            tls_cert_file=args.tls_cert,
            tls_key_file=args.tls_key,
        )
        agent.run_forever()
    except (AgentError, CoturnError) as exc:
        return fail(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
