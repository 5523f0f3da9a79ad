"""A call whose media flows through a media node the region allocated: a real node agent
(coturn with TURN over TLS) registers through RabbitMQ, two aiortc peers forced to relay
get that node's URLs and call-bound credentials, and their frames go through its relay
ports. Ops see the node, its restarts and its load through the ops API, drain it
(new calls get no relay) and take it back."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from aioice.turn import create_turn_endpoint
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from konsil.media_nodes.receipts import ResidencyReceipt, signed_bytes
from konsil.platform.core.keys.region_signing import KeySet, Signature, verify
from tests.conftest import Stack, TurnClient, fetch, free_port, release_turn, wait_until
from tests.e2e.test_call_aiortc import LUMA, Peer, arrive, frames_from, login, mean_luma, receive, socket
from tests.e2e.test_network_test_e2e import Visit, run_test

pytestmark = pytest.mark.e2e

NODE = "us-relay-tls"
RELAY_PORTS = (45200, 45299)
OPS_CLI = [sys.executable, "-m", "konsil.platform.cli.main", "media-nodes"]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key (PEM), as a node would have."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "relay.crt", directory / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class Node:
    def __init__(self, port: int, tls_port: int, workdir: Path, cert: Path, process: subprocess.Popen[bytes]) -> None:
        self.port, self.tls_port, self.workdir, self.cert, self.process = port, tls_port, workdir, cert, process

    def coturn_pid(self) -> int:
        return int((self.workdir / "turnserver.pid").read_text().strip())


@pytest.fixture(scope="module")
def node(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    directory = tmp_path_factory.mktemp("tls-node")
    workdir = directory / "work"
    workdir.mkdir(mode=0o700)
    cert, key = self_signed(directory)
    port, tls_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}
    args = {
        "--region": "us",
        "--node-id": NODE,
        "--config": str(stack.run_dir / "region-us.toml"),
        "--public-host": "127.0.0.1",
        "--port": str(port),
        "--listen-ip": "127.0.0.1",
        "--relay-ip": "127.0.0.1",
        "--min-port": str(RELAY_PORTS[0]),
        "--max-port": str(RELAY_PORTS[1]),
        "--heartbeat-seconds": "0.5",
        "--drain-timeout": "5",
        "--workdir": str(workdir),
        "--tls-cert": str(cert),
        "--tls-key": str(key),
        "--tls-port": str(tls_port),
    }
    command = [sys.executable, "-m", "konsil.platform.cli.main", "media-node", "run"]
    argv = [*command, *(x for pair in args.items() for x in pair), "--loopback-only"]
    process = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        yield Node(port, tls_port, workdir, cert, process)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "the agent drains and leaves cleanly"


def ops(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=f"{stack.region_url('us')}/ops/v1/media-nodes",
        headers={"authorization": f"Bearer {stack.ops_token}"},
        timeout=30,
    )


def node_view(stack: Stack) -> dict[str, Any] | None:
    listed = ops(stack).get("/")
    assert listed.status_code == 200, listed.text
    return next((n for n in listed.json()["nodes"] if n["node_id"] == NODE), None)


def node_where(stack: Stack, wanted: Any) -> dict[str, Any] | None:
    """The node's view if ``wanted(view)`` holds, else None (for ``wait_until``)."""
    view = node_view(stack)
    return view if view is not None and wanted(view) else None


def us_practice(stack: Stack) -> dict[str, Any]:
    made = stack.signup("us")
    base = stack.region_url("us")
    owner = stack.login(base, made["slug"], made["owner"]["email"])
    created = owner.post(f"/api/v1/orgs/{made['slug']}/rooms", json={"slug": "room", "title": "Room"})
    assert created.status_code == 201, created.text
    return {"base": base, "slug": made["slug"], "owner": made["owner"], "client": owner}


async def a_call(stack: Stack, practice: dict[str, Any], with_media: bool) -> dict[str, Any]:
    """Admit a new visitor; with media, both peers connect and exchange frames."""
    base, slug = practice["base"], practice["slug"]
    expert = await login(base, slug, practice["owner"]["email"], practice["owner"]["password"])
    visitor_at = await arrive(base, slug, "room")
    peers: list[Peer] = []
    try:
        async with socket(base, f"{visitor_at.path}/ws", konsil_visit=visitor_at.token) as visitor_ws:
            assert await receive(visitor_ws) == {"type": "waiting"}
            visitor = Peer("visitor", visitor_ws)
            peers.append(visitor)
            admitted = await expert.http.post(f"/api/v1/orgs/{slug}/visits/{visitor_at.visit_id}/admit")
            assert admitted.status_code == 200, admitted.text
            call_id = admitted.json()["id"]
            await visitor.until(visitor.joined)
            joined = visitor.joined.result()
            if not with_media:
                return {"call_id": call_id, "joined": joined}
            async with socket(base, f"/{slug}/calls/{call_id}/ws", konsil_session=expert.session) as expert_ws:
                other = Peer("expert", expert_ws)
                peers.append(other)
                await visitor.until(visitor.connected)
                await other.until(other.connected)
                lumas = {}
                for receiver, source in ((visitor, "expert"), (other, "visitor")):
                    frames = await frames_from(receiver)
                    lumas[receiver.role] = mean_luma(frames[-1])
                    assert abs(lumas[receiver.role] - LUMA[source]) < 8
                pairs = {}
                for peer in (visitor, other):
                    pair = peer.ice_transport()._connection._nominated[1]  # aioice: the selected pair
                    pairs[peer.role] = (pair.local_candidate, pair.remote_candidate)
                await other.send({"type": "hangup"})
                await visitor.until(visitor.ended)
                return {"call_id": call_id, "joined": joined, "pairs": pairs}
    finally:
        for peer in peers:
            await peer.close()
        await expert.http.aclose()


def relay_urls(joined: dict[str, Any]) -> list[str]:
    return [url for server in joined["ice_servers"] for url in server["urls"] if url.startswith("turn")]


async def turn_allocate_over_tls(node: Node, username: str, password: str) -> bool:
    context = ssl.create_default_context(cafile=str(node.cert))
    transport, client = await asyncio.wait_for(
        create_turn_endpoint(
            TurnClient,
            ("127.0.0.1", node.tls_port),
            username,
            password,
            lifetime=60,
            ssl=context,
            transport="tcp",
        ),
        10,
    )
    relayed = transport.get_extra_info("sockname")
    await release_turn(transport, client)
    return bool(relayed) and RELAY_PORTS[0] <= relayed[1] <= RELAY_PORTS[1]


def test_media_flows_through_the_allocated_node_and_tls_works(stack: Stack, node: Node) -> None:
    wait_until(lambda: node_where(stack, lambda v: v["status"] == "active"), "the node to register", every=0.3)
    practice = us_practice(stack)
    call = asyncio.run(a_call(stack, practice, with_media=True))
    joined = call["joined"]
    # The browser is given this node's TURN over UDP, TCP and TLS, with call-bound credentials.
    assert relay_urls(joined) == [
        f"turn:127.0.0.1:{node.port}?transport=udp",
        f"turn:127.0.0.1:{node.port}?transport=tcp",
        f"turns:127.0.0.1:{node.tls_port}?transport=tcp",
    ]
    [server] = [s for s in joined["ice_servers"] if s.get("username")]
    assert server["username"].endswith(f":{call['call_id']}")
    # Media went through the node's relay: both peers' selected pairs are relay
    # candidates on the node's relay ports.
    for local, remote in call["pairs"].values():
        assert local.type == "relay" and remote.type == "relay"
        assert RELAY_PORTS[0] <= local.port <= RELAY_PORTS[1] and RELAY_PORTS[0] <= remote.port <= RELAY_PORTS[1]
    # The residency receipt names this node and the region.
    receipt = practice["client"].get(f"/api/v1/orgs/{practice['slug']}/calls/{call['call_id']}/receipt").json()
    assert receipt["valid"] and receipt["receipt"]["relays"] == [NODE] and receipt["receipt"]["region"] == "us"
    key_set = msgspec.convert(httpx.get(f"{stack.region_url('us')}/.well-known/konsil/keys").json(), KeySet)
    signature = msgspec.convert(receipt["signature"], Signature)
    assert verify(key_set, signed_bytes(ResidencyReceipt(**receipt["receipt"])), signature)
    # TURN over TLS: the call's credentials open an allocation through the TLS listener.
    assert asyncio.run(turn_allocate_over_tls(node, server["username"], server["credential"]))


def test_ops_see_restarts_and_drain_a_node(stack: Stack, node: Node) -> None:
    wait_until(lambda: node_where(stack, lambda v: v["status"] == "active"), "the node to register", every=0.3)
    client = ops(stack)
    # Only the region's ops team: anonymous callers, members and integration tokens are refused.
    assert httpx.get(f"{stack.region_url('us')}/ops/v1/media-nodes/").status_code == 401
    practice = us_practice(stack)
    assert practice["client"].get("/ops/v1/media-nodes/").status_code == 403
    wrong = httpx.get(
        f"{stack.region_url('us')}/ops/v1/media-nodes/", headers={"authorization": "Bearer not-an-ops-token"}
    )
    assert wrong.status_code == 401
    assert client.get("/Not_A_Node").status_code == 400
    assert client.get("/no-such-node").status_code == 404
    assert client.post(f"/{NODE}/cordon", json={"reason": "x" * 201}).status_code == 400

    # coturn dies: the agent restarts it, and ops see the restart count (from the
    # heartbeat, kept in the region DB by the registry).
    before = node_view(stack)
    assert before is not None and before["turn_urls"][-1].startswith("turns:")
    os.kill(node.coturn_pid(), signal.SIGKILL)
    after = wait_until(
        lambda: node_where(stack, lambda v: v["restarts"] > before["restarts"] and v["status"] == "active"),
        "the restart to show",
        every=0.3,
    )
    assert after["alive"] is True
    rows = wait_until(
        lambda: asyncio.run(
            fetch(stack.dsns["us"], "SELECT restarts, last_seq, state FROM media_node WHERE node_id = $1", NODE)
        ),
        "the registry to write the node to the region DB",
        every=0.3,
    )
    wait_until(
        lambda: asyncio.run(
            fetch(stack.dsns["us"], "SELECT 1 FROM media_node WHERE node_id = $1 AND restarts >= 1", NODE)
        ),
        "the restart count to reach the region DB",
        every=0.3,
    )
    assert rows[0]["state"] == "active" and rows[0]["last_seq"] > 0

    # Drain: no new calls; with no call left on it, ops see it "drained".
    drained = client.post(f"/{NODE}/drain", json={"reason": "kernel update"})
    assert drained.status_code == 200, drained.text
    assert drained.json()["status"] in ("draining", "drained") and drained.json()["drain_requested"] is True
    # This replica applies the drain at once (others follow the region DB within 2 s):
    # its registry, which the ops API shows, is what the admission below asks.
    wait_until(lambda: node_where(stack, lambda v: v["drain_requested"]), "the registry to hold the drain")
    visit = httpx.post(f"{practice['base']}/{practice['slug']}/room/visits", data={"name": "V", "consent": "yes"})
    visit_id = visit.headers["location"].rsplit("/", 1)[1]
    refused = practice["client"].post(f"/api/v1/orgs/{practice['slug']}/visits/{visit_id}/admit")
    assert refused.status_code == 503 and "no media relay is available in region us" in refused.text.lower()
    wait_until(lambda: node_where(stack, lambda v: v["status"] == "drained"), "the node to show drained", every=0.3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}
    listed = subprocess.run(
        [*OPS_CLI, "list", "--region", "us", "--config", str(stack.run_dir / "region-us.toml")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert listed.returncode == 0 and f"{NODE}\tdrained" in listed.stdout and "kernel update" in listed.stdout

    back = client.post(f"/{NODE}/uncordon")
    assert back.status_code == 200 and back.json()["status"] == "active"
    wait_until(lambda: node_where(stack, lambda v: v["status"] == "active"), "the registry to take the node back")
    assert relay_urls(asyncio.run(a_call(stack, practice, with_media=False))["joined"])


def ops_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}
    config = ["--region", "us", "--config", str(stack.run_dir / "region-us.toml")]
    return subprocess.run([*OPS_CLI, *args, *config], capture_output=True, text=True, env=env, check=False, timeout=60)


def test_a_node_the_region_never_heard_of_cannot_be_cordoned(stack: Stack, node: Node) -> None:
    """``cordon ghost-node`` answered 200 and stored a cordon of nothing; ``uncordon
    never-existed`` said it takes new calls again. Both are refused, naming the known
    nodes, by the ops API (404) and the ops CLI (exit 1); a node not racked yet can still
    be cordoned when ops say so."""
    wait_until(lambda: node_where(stack, lambda v: v["status"] == "active"), "the node to register", every=0.3)
    client = ops(stack)
    for action, body in (("cordon", {"reason": "typo"}), ("drain", None), ("uncordon", None)):
        refused = client.post(f"/ghost-node/{action}", json=body)
        assert refused.status_code == 404, refused.text
        message = refused.json()["message"]
        assert "no media node 'ghost-node' is known in region us" in message and NODE in message, message
    assert "ghost-node" not in [n["node_id"] for n in client.get("/").json()["nodes"]], "no cordon was stored"

    for args in (("cordon", "ghost-node", "--reason", "typo"), ("drain", "ghost-node"), ("uncordon", "never-existed")):
        done = ops_cli(stack, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stdout == "" and "Traceback" not in done.stderr
        assert f"no media node '{args[1]}' is known in region us" in done.stderr and NODE in done.stderr
    assert "ghost-node" not in ops_cli(stack, "cordons").stdout

    # Asked for: a node cordoned before it ever joins, by the API and by the CLI.
    early = client.post("/us-relay-rack9/cordon", json={"reason": "not racked yet", "new_node": True})
    assert early.status_code == 200 and early.json()["status"] == "cordoned", early.text
    done = ops_cli(stack, "cordon", "us-relay-rack10", "--new-node")
    assert done.returncode == 0 and "cordoned" in done.stdout, done.stderr
    for name in ("us-relay-rack9", "us-relay-rack10"):
        lifted = ops_cli(stack, "uncordon", name)
        assert lifted.returncode == 0 and "takes new calls again" in lifted.stdout, lifted.stderr
    assert ops_cli(stack, "uncordon", "us-relay-rack9").returncode == 1, "uncordoned and never heard: unknown"
    # A known node that is not cordoned is told so, not that it "takes new calls again".
    idle = ops_cli(stack, "uncordon", NODE)
    assert idle.returncode == 0 and "was not cordoned" in idle.stdout, idle.stderr


async def test_the_network_test_runs_through_the_allocated_node(stack: Stack, node: Node) -> None:
    await asyncio.to_thread(
        wait_until, lambda: node_where(stack, lambda v: v["status"] == "active"), "the node to register", every=0.3
    )
    visit = await asyncio.to_thread(Visit, stack, "us")
    async with visit.client() as http:
        relays = await http.get(f"{visit.test_path}/relays", params={"transport": "udp"})
        assert relays.json()["relay"] == NODE
        assert relays.json()["ice_servers"][0]["urls"] == [f"turn:127.0.0.1:{node.port}?transport=udp"]
        for transport in ("udp", "tcp"):
            result = await run_test(http, visit.test_path, transport)
            assert result["verdict"] in ("good", "may be unstable") and result["rtt_ms"] > 0, result
