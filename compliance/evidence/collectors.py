"""The evidence collectors by name, and one collection run over them.

``COLLECTORS`` maps each collector of ``controls.catalog.COLLECTORS`` to its
``collect(region, scope)``. ``collect`` runs the ones asked for one after another
(each reads the region's database; one at a time keeps a report's load on it bounded)
and always returns one observation per collector: a collector that raises yields an
observation whose checks all fail, saying it could not run and why in words that hold
no personal data, and the run goes on with the next.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence

from konsil.compliance.controls.catalog import COLLECTOR_RULES
from konsil.compliance.evidence import (
    access_log,
    consent,
    dsr,
    encryption,
    keys,
    network_tests,
    residency,
    retention,
    sessions,
    subprocessors,
)
from konsil.compliance.evidence.common import failed, observation
from konsil.compliance.evidence.model import Collect, Observation, Scope
from konsil.platform.core.keys.provider import KeyServiceError
from konsil.platform.core.region import RegionContext

log = logging.getLogger("konsil.evidence")

COLLECTORS: dict[str, Collect] = {
    retention.COLLECTOR: retention.collect,
    encryption.COLLECTOR: encryption.collect,
    keys.COLLECTOR: keys.collect,
    access_log.COLLECTOR: access_log.collect,
    residency.COLLECTOR: residency.collect,
    dsr.COLLECTOR: dsr.collect,
    sessions.COLLECTOR: sessions.collect,
    subprocessors.COLLECTOR: subprocessors.collect,
    network_tests.COLLECTOR: network_tests.collect,
    consent.COLLECTOR: consent.collect,
}


class UnknownCollector(ValueError):
    """``names`` asked for a collector that does not exist."""


def _safe_reason(exc: BaseException) -> str:
    """Why a collector failed, without personal data: the key service's own messages
    name no key material or person; of anything else only the kind of error is shown
    (a database error's text can quote stored values)."""
    if isinstance(exc, KeyServiceError):
        return f"{type(exc).__name__}: {exc}"[:200]
    if isinstance(exc, TimeoutError):
        return "it took too long (timeout)"
    return f"{type(exc).__name__} (details in the region's log)"


def _where(exc: BaseException) -> str:
    """The innermost frame that raised, as file:line (code, never data)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def could_not_run(scope: Scope, name: str, exc: BaseException) -> Observation:
    """The observation of a collector that raised: each of its checks fails, saying why."""
    reason = f"the collector could not run: {_safe_reason(exc)}"
    checks = [failed(rule, reason[0].upper() + reason[1:] + ".") for rule in sorted(COLLECTOR_RULES[name])]
    evidence = {"collector": name, "error": reason}
    return observation(scope, name, "TEST", "The collector did not finish; nothing was observed.", checks, evidence)


async def collect(region: RegionContext, scope: Scope, names: Sequence[str] | None = None) -> list[Observation]:
    """One observation per collector in ``names`` (default: all), in that order."""
    chosen = list(COLLECTORS) if names is None else list(names)
    unknown = [name for name in chosen if name not in COLLECTORS]
    if unknown:
        raise UnknownCollector(f"collector: unknown {', '.join(map(repr, unknown))} (known: {', '.join(COLLECTORS)})")
    observations: list[Observation] = []
    for name in chosen:
        try:
            observations.append(await COLLECTORS[name](region, scope))
        except Exception as exc:  # recorded as a failed observation; the next collector runs
            log.error(  # no exc_info: an exception's text can hold stored values
                "evidence collector %s failed for org %s: %s at %s", name, scope.org_id, type(exc).__name__, _where(exc)
            )
            observations.append(could_not_run(scope, name, exc))
    return observations
