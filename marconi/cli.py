"""The `marconi` command: runs every process of the cluster and speaks to its admin API."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from collections.abc import Sequence


def _node(args: argparse.Namespace) -> int:
    from node.server import run
    from node.settings import NodeSettings

    settings = NodeSettings.from_env()
    overrides = {
        key: value
        for key, value in (
            ("storage", args.storage),
            ("partition", args.partition),
            ("host", args.host),
            ("port", args.port),
            ("log_level", args.log_level),
        )
        if value is not None
    }
    if args.log_json:
        overrides["log_json"] = True
    run(dataclasses.replace(settings, **overrides))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marconi",
        description="A Zaqar-compatible message queue service, partitioned across storage.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    node = commands.add_parser(
        "node",
        help="serve the Zaqar API over one partition's storage",
        description="Serve the Zaqar API (v1, v1.1, v2) over one storage partition. "
        "Environment: MARCONI_STORAGE, MARCONI_PARTITION, MARCONI_HOST, MARCONI_PORT, "
        "MARCONI_LOG_LEVEL, MARCONI_LIMIT_<NAME>.",
    )
    node.add_argument(
        "--storage",
        metavar="URI",
        help="sqlite:///path/to/file.db or mongodb://host:port/db "
        "(default: sqlite:///./marconi-data/default.db)",
    )
    node.add_argument(
        "--partition", metavar="NAME", help="this partition's name (default: default)"
    )
    node.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    node.add_argument("--port", type=int, help="port to listen on (default: 8889)")
    node.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    node.add_argument("--log-json", action="store_true", help="JSON logs even on a terminal")
    node.set_defaults(func=_node)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
