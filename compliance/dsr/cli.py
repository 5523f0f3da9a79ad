"""``konsil dsr …``: data-subject requests from the command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    print("konsil dsr: not available yet", file=sys.stderr)
    return 2
