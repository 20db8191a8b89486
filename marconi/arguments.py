"""argparse types: the CLI's own checks of names, URLs and numbers, made before anything is sent,
so a mistyped command exits 2 (usage) with a message that says what a good value looks like."""

from __future__ import annotations

import argparse
import re
from urllib.parse import urlsplit

from catalog.records import PartitionState

STATES = [state.value for state in PartitionState]
# The admin API's rule for partition names (proxy/admin.py); the server still has the last word.
NAME = re.compile(r"^[a-zA-Z0-9_\-.]{1,64}$")


def partition_name(raw: str) -> str:
    if not NAME.match(raw):
        raise argparse.ArgumentTypeError(
            f"{raw!r}: a partition name has 1 to 64 letters, digits, '_', '-' or '.'"
        )
    return raw


def node_url(raw: str) -> str:
    parsed = urlsplit(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(f"{raw!r}: a node URL is http(s)://host:port")
    return raw.rstrip("/")


def _whole(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None


def weight(raw: str) -> int:
    value = _whole(raw)
    if value < 0:
        raise argparse.ArgumentTypeError("a weight is 0 or more (0: no new queues)")
    return value


def positive(raw: str) -> int:
    value = _whole(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def seconds_or_zero(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def fraction(raw: str) -> float:
    """A tolerance: a number from 0 to 1 (0.1 is 10%)."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be from 0 to 1 (0.1 is 10%)")
    return value


MIGRATION_ID = re.compile(r"^[0-9a-f]{24}$")


def migration_id(raw: str) -> str:
    if not MIGRATION_ID.match(raw):
        raise argparse.ArgumentTypeError(f"{raw!r}: a migration id is 24 hex digits")
    return raw
