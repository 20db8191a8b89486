"""How the CLI prints: aligned tables and key/value blocks for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def cell(value: Any) -> str:
    """One table cell: lists joined with commas, booleans as yes/no, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value) or "-"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; the last column is never padded."""
    lines = [list(headers), *([cell(v) for v in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """A key/value block, keys aligned, for one record."""
    items = [(key, cell(value)) for key, value in pairs]
    width = max((len(key) for key, _ in items), default=0)
    return "\n".join(f"{key.ljust(width)}  {value}".rstrip() for key, value in items)


def emit(text: str, out: TextIO | None = None) -> None:
    print(text, file=out or sys.stdout, flush=True)


def emit_json(doc: Any, out: TextIO | None = None) -> None:
    """One JSON document, indented and key-sorted so diffs and `jq` both read it well."""
    emit(json.dumps(doc, indent=2, sort_keys=True), out)


def error(message: str) -> None:
    print(f"marconi: {message}", file=sys.stderr, flush=True)


def percent(value: Any) -> str:
    """A share (0.25) as a percentage ("25.0%"); a dash when there is none."""
    return "-" if value is None else f"{float(value):.1%}"


def ago(timestamp: Any, now: float) -> str:
    """How long before `now` a Unix time was, for people ("12s ago")."""
    if not isinstance(timestamp, int | float) or timestamp <= 0:
        return "-"
    seconds = max(0, int(now - timestamp))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"
