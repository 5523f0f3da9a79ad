"""The time: aware UTC datetimes only, from one place (tests and purges move it)."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
