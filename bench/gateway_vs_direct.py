"""Gateway vs direct: one authenticated read through the API gateway and at the region.

The same read goes through the control plane's API gateway and directly to the
region service, in one run.

The read is ``GET /api/v1/orgs/{slug}/rooms`` with ``Authorization: Bearer <token>``
(an integration token with scope rooms:read; a few rooms exist). Rounds are
interleaved in the order direct, gateway, gateway, direct, direct, gateway, …
(ABBA), so drift (caches, CPU frequency, other load) hits both sides alike.

Result: requests/s, p50/p90/p99 per side, and ``throughput_ratio`` =
gateway rps / direct rps (aim: at least 0.85).

    .venv/bin/python -m bench.gateway_vs_direct [--requests N] [--concurrency C]
        [--database postgres|sqlite] [--seconds S] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.harness import (
    DATABASES,
    LoadResult,
    Stack,
    closed_loop,
    event_loop_name,
    load_client,
    log,
    machine,
    run_async,
    run_standalone,
    running_stack,
    set_quiet,
    summarise,
)

NAME = "gateway_vs_direct"
AIM = 0.85


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--requests", type=int, default=3000, help="measured requests per side, over all rounds")
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop workers (keep moderate on small machines)")
    p.add_argument("--database", choices=DATABASES, default="postgres")
    p.add_argument("--seconds", type=float, default=60.0, help="cap on the measured time, both sides together")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds per side")
    p.add_argument("--warmup", type=int, default=300, help="discarded requests per side before the first round")
    p.add_argument("--rooms", type=int, default=5, help="rooms in the listed organisation")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


@dataclass(frozen=True)
class Fixture:
    slug: str
    token: str
    direct_url: str
    gateway_url: str


def _check(response: httpx.Response, what: str, *status: int) -> httpx.Response:
    expected = status or (200,)
    if response.status_code not in expected:
        raise RuntimeError(f"{what}: expected {expected}, got {response.status_code}: {response.text[:300]}")
    return response


async def prepare(stack: Stack, rooms: int) -> Fixture:
    """Sign up an organisation, log its owner in, create rooms and a rooms:read token."""
    slug = f"bench-{secrets.token_hex(3)}"
    owner = {"name": "Bench Owner", "email": f"owner@{slug}.example", "password": secrets.token_urlsafe(16)}
    api = f"{stack.region_url()}/api/v1/orgs/{slug}"
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        signed_up = _check(
            await client.post(
                f"{stack.control_url}/api/v1/signup",
                json={
                    "region": stack.settings.regions[0].id,
                    "organisation": {"name": "Benchmark practice", "slug": slug},
                    "owner": owner,
                },
            ),
            "signup",
            200,
            201,
        ).json()
        login = _check(
            await client.post(f"{api}/auth/login", json={"email": owner["email"], "password": owner["password"]}),
            "login",
        )
        csrf = {"x-csrf-token": login.json()["csrf_token"]}
        for number in range(rooms):
            _check(
                await client.post(
                    f"{api}/rooms",
                    headers=csrf,
                    json={
                        "slug": f"{slug}-room-{number}",
                        "title": f"Room {number}",
                        "expert_id": signed_up["owner_id"],
                    },
                ),
                "create room",
                200,
                201,
            )
        token = _check(
            await client.post(f"{api}/tokens", headers=csrf, json={"label": "benchmark", "scopes": ["rooms:read"]}),
            "create token",
            200,
            201,
        ).json()["token"]
    path = f"/api/v1/orgs/{slug}/rooms"
    return Fixture(slug, token, stack.region_url() + path, stack.control_url + path)


async def sanity_check(fx: Fixture, rooms: int) -> None:
    """Both sides answer the same body to the token, and refuse the read without it."""
    auth = {"authorization": f"Bearer {fx.token}"}
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        direct = _check(await client.get(fx.direct_url, headers=auth), "direct read")
        gateway = _check(await client.get(fx.gateway_url, headers=auth), "gateway read")
        if json.loads(direct.content) != json.loads(gateway.content):
            raise RuntimeError("gateway and direct answered different bodies")
        if len(direct.json()) != rooms:
            raise RuntimeError(f"expected {rooms} rooms, got {len(direct.json())}")
        _check(await client.get(fx.direct_url), "direct read without token", 401)
        _check(await client.get(fx.gateway_url), "gateway read without token", 401)


def round_order(rounds: int) -> list[str]:
    """ABBA interleaving: direct, gateway, gateway, direct, direct, gateway, …"""
    order: list[str] = []
    for number in range(rounds):
        order += ["direct", "gateway"] if number % 2 == 0 else ["gateway", "direct"]
    return order


async def measure(stack: Stack, fx: Fixture, args: argparse.Namespace) -> dict[str, list[LoadResult]]:
    headers = {"authorization": f"Bearer {fx.token}"}
    urls = {"direct": fx.direct_url, "gateway": fx.gateway_url}
    per_round = math.ceil(args.requests / args.rounds)
    round_seconds = args.seconds / (2 * args.rounds)
    results: dict[str, list[LoadResult]] = {"direct": [], "gateway": []}
    clients = {side: load_client(args.concurrency) for side in urls}
    try:
        for side, url in urls.items():
            log(f"warm-up {side}: {args.warmup} requests")
            await closed_loop(
                clients[side],
                url,
                headers=headers,
                concurrency=args.concurrency,
                requests=args.warmup,
                seconds=round_seconds,
            )
        for number, side in enumerate(round_order(args.rounds), start=1):
            stack.check_alive()
            result = await closed_loop(
                clients[side],
                urls[side],
                headers=headers,
                concurrency=args.concurrency,
                requests=per_round,
                seconds=round_seconds,
                label=side,
                cpu_probe=stack.cpu_seconds,
            )
            log(
                f"round {number}/{2 * args.rounds} {side:<7} {result.rps:8.1f} req/s  "
                f"{result.ok} ok, {result.errors} errors, {result.seconds:.2f}s"
            )
            results[side].append(result)
        stack.check_alive()
    finally:
        for client in clients.values():
            await client.aclose()
    return results


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def _own_cpu_ms(summary: dict[str, Any]) -> float | None:
    """CPU per request of the processes the read involves (servers, load generator, database)."""
    cpu = summary.get("cpu_ms_per_request") or {}
    own = [v for k, v in cpu.items() if not k.startswith(("machine", "other"))]
    return round(sum(own), 3) if own else None


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.rounds < 1 or args.seconds <= 0:
        raise SystemExit("--requests, --concurrency, --rounds and --seconds must be positive")
    set_quiet(args.quiet)
    host = machine()  # load average before the run: other work on the machine skews both sides
    with running_stack(args.database) as stack:
        fx = run_async(prepare(stack, args.rooms))
        run_async(sanity_check(fx, args.rooms))
        log(
            f"measuring {args.requests} requests per side, concurrency {args.concurrency}, "
            f"{args.rounds} rounds per side, cap {args.seconds:.0f}s"
        )
        results = run_async(measure(stack, fx, args))
    direct, gateway = summarise(results["direct"]), summarise(results["gateway"])
    ratio = _ratio(gateway["rps"], direct["rps"])
    pairs = [_ratio(g.rps, d.rps) for d, g in zip(results["direct"], results["gateway"], strict=True)]
    return {
        "benchmark": NAME,
        "database": args.database,
        "concurrency": args.concurrency,
        "requests": args.requests,
        "rounds": args.rounds,
        "order": round_order(args.rounds),
        "read": f"GET /api/v1/orgs/{{slug}}/rooms (Bearer token, scope rooms:read, {args.rooms} rooms)",
        "direct": direct,
        "gateway": gateway,
        "throughput_ratio": ratio,
        "p50_ratio": _ratio(gateway["p50_ms"], direct["p50_ms"]),
        "p99_ratio": _ratio(gateway["p99_ms"], direct["p99_ms"]),
        # Per adjacent direct/gateway pair of rounds: the spread shows how noisy the machine was.
        "pair_throughput_ratios": pairs,
        # Direct over gateway CPU per request of our own processes: the throughput ratio to
        # expect when the machine's CPUs are the bottleneck; robust to other load on the machine.
        "cpu_bound_ratio": _ratio(_own_cpu_ms(direct), _own_cpu_ms(gateway)),
        "aim": AIM,
        "meets_aim": ratio is not None and ratio >= AIM and not direct["errors"] and not gateway["errors"],
        "load_generator": {"client": f"httpx {httpx.__version__}", "event_loop": event_loop_name(), "same_host": True},
        "machine": host | {"load_average_1m_after": machine().get("load_average_1m")},
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(run, argv, "servers stopped and databases dropped")


if __name__ == "__main__":
    sys.exit(main())
