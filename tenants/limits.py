"""Rate limits of the tenant side, where abuse is cheap: member logins, the visitor's
join form and invitations. Each answers 429 with Retry-After (pages: a human message).

Counted in the process (konsil.platform.ratelimit): each replica counts its own callers.
Handlers read the limits from this module at call time, so a test may swap in small ones.
"""

from __future__ import annotations

import contextlib

from konsil.platform.errors import AppError
from konsil.platform.lookup import normalise_email
from konsil.platform.ratelimit import RateLimit, too_many_requests

# Failed logins: guessing one account's password, and spraying from one address. Only
# failures count (unknown e-mail addresses too, so the limit reveals nothing): staff
# behind one hospital address log in freely, a guesser is slowed down.
LOGIN_FAILURES_PER_ACCOUNT = RateLimit("login failures per account", 10, 15 * 60)
LOGIN_FAILURES_PER_ADDRESS = RateLimit("login failures per address", 30, 60)
# The visitor's join form writes a visit: per source address, and per room.
JOINS_PER_ADDRESS = RateLimit("visitor joins per address", 20, 60)
JOINS_PER_ROOM = RateLimit("visitor joins per room", 60, 60)
# Invitations (POST /members): each may hash a password and updates the directory.
INVITATIONS_PER_ORGANISATION = RateLimit("invitations per organisation", 60, 60)


def _account(email: str) -> str:
    return f"account:{normalise_email(email)}"


def check_login(email: str, source_address: str) -> None:
    """Before verifying a password: 429 while the account or the address is over its limit."""
    for limit, key in (
        (LOGIN_FAILURES_PER_ACCOUNT, _account(email)),
        (LOGIN_FAILURES_PER_ADDRESS, f"address:{source_address}"),
    ):
        wait = limit.retry_after(key)
        if wait is not None:
            raise too_many_requests(wait)


def login_failed(email: str, source_address: str) -> None:
    """Count a failed login against the account and the address."""
    for limit, key in (
        (LOGIN_FAILURES_PER_ACCOUNT, _account(email)),
        (LOGIN_FAILURES_PER_ADDRESS, f"address:{source_address}"),
    ):
        with contextlib.suppress(AppError):  # already over: the next attempt is refused
            limit.hit(key)


def join(room_id: object, source_address: str) -> None:
    """Count a visitor's join; 429 when the address or the room is over its limit."""
    wait = JOINS_PER_ADDRESS.retry_after(f"address:{source_address}") or JOINS_PER_ROOM.retry_after(f"room:{room_id}")
    if wait is not None:
        raise too_many_requests(wait)
    JOINS_PER_ADDRESS.hit(f"address:{source_address}")
    JOINS_PER_ROOM.hit(f"room:{room_id}")


def invitation(org_id: object) -> None:
    INVITATIONS_PER_ORGANISATION.hit(f"org:{org_id}")
