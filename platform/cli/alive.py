"""``konsil alive worker|beat``: the liveness probe of a region's Celery worker or beat
(platform/core/liveness.py). Exit 0 while its loop turns, 1 (and why, on standard
error) when it stopped: Kubernetes then restarts the container."""

from __future__ import annotations

import argparse
import sys

from konsil.platform.core import liveness
from konsil.platform.core.settings import load_settings


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    path = liveness.alive_file(settings.data_dir, args.kind, args.region)
    reason = liveness.stale(path, args.max_age, args.max_task_seconds)
    if reason is None:
        return 0
    print(f"konsil {args.kind} of region {args.region} is not alive: {reason}", file=sys.stderr)
    return 1
