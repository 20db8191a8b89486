"""Parsing: every command's flags, the settings they build, and help that says what it does."""

from __future__ import annotations

from pathlib import Path

import pytest

from marconi.cli import build_parser, main, node_settings, proxy_settings, worker_settings


def test_node_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARCONI_STORAGE", "sqlite:///from-env.db")
    monkeypatch.setenv("MARCONI_PORT", "7000")
    settings = node_settings(build_parser().parse_args(["node", "--port", "9001", "--log-json"]))
    assert settings.storage == "sqlite:///from-env.db"
    assert settings.port == 9001
    assert settings.log_json is True
    assert node_settings(build_parser().parse_args(["node"])).log_json is None
    monkeypatch.setenv("MARCONI_LOG_JSON", "true")
    assert node_settings(build_parser().parse_args(["node"])).log_json is True
    monkeypatch.setenv("MARCONI_LOG_JSON", "0")
    assert node_settings(build_parser().parse_args(["node"])).log_json is False


def test_proxy_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARCONI_CATALOG_URL", "http://etcd-a:2379")
    monkeypatch.setenv("MARCONI_PROXY_PORT", "7777")
    monkeypatch.setenv("MARCONI_CATALOG_PREFIX", "/env/")
    args = build_parser().parse_args(
        [
            "proxy",
            "--catalog",
            "http://127.0.0.1:2379,http://127.0.0.1:22379",
            "--log-level",
            "debug",
        ]
    )
    settings = proxy_settings(args)
    assert settings.catalog_url == "http://127.0.0.1:2379,http://127.0.0.1:22379"
    assert settings.port == 7777
    assert settings.key_prefix == "/env/"
    assert settings.log_level == "debug"
    assert settings.host == "127.0.0.1"

    argv = ["proxy", "--host", "0.0.0.0", "--port", "8888", "--catalog-prefix", "/x/"]
    flags = build_parser().parse_args([*argv, "--log-json", "--insecure-noauth"])
    settings = proxy_settings(flags)
    assert (settings.host, settings.port, settings.key_prefix) == ("0.0.0.0", 8888, "/x/")
    assert settings.log_json is True
    assert settings.catalog_url == "http://etcd-a:2379"


def test_dev_defaults_reach_the_documented_cluster() -> None:
    args = build_parser().parse_args(["dev"])
    assert (args.port, args.partitions, args.data, args.etcd) == (8888, 2, Path(".data/dev"), None)
    args = build_parser().parse_args(
        ["dev", "--port", "9000", "--partitions", "3", "--data", "/tmp/x", "--etcd", "http://e:1"]
    )
    assert (args.port, args.partitions, args.data, args.etcd) == (
        9000,
        3,
        Path("/tmp/x"),
        "http://e:1",
    )


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_dev_needs_at_least_one_partition(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["dev", "--partitions", bad])
    assert exited.value.code == 2
    assert "--partitions" in capsys.readouterr().err


def test_admin_url_defaults_to_the_environment_then_the_local_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from marconi.admin_client import AdminClient

    monkeypatch.delenv("MARCONI_URL", raising=False)
    assert AdminClient().url == "http://127.0.0.1:8888"
    monkeypatch.setenv("MARCONI_URL", "http://proxy.example:80/")
    assert AdminClient().url == "http://proxy.example:80"
    assert AdminClient("http://other:1").url == "http://other:1"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([])
    assert exited.value.code == 2


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            (),
            [
                *("node", "proxy", "dev", "partitions", "queues", "pins", "health"),
                *("migrate", "drain", "rebalance", "worker", "Exit codes", "4 a --wait timed out"),
            ],
        ),
        (("partitions",), ["list", "add", "set", "remove"]),
        (
            ("partitions", "add"),
            ["--node", "--weight", "--state", "--json", "--url", "MARCONI_URL"],
        ),
        (("partitions", "remove"), ["owns queues"]),
        (("queues", "where"), ["PROJECT", "QUEUE", '"_"']),
        (("pins",), ["list", "set", "remove"]),
        (("health",), ["exit 1"]),
        (("dev",), ["--port", "--partitions", "--data", "--etcd", "Ctrl-C"]),
        (
            ("proxy",),
            [
                *("--catalog", "--host", "--port", "--log-level", "--log-json", "--auth"),
                *("--keystone-url", "--keystone-username", "MARCONI_KEYSTONE_PASSWORD"),
                *("--token-cache-size", "--token-cache-ttl"),
            ],
        ),
        (("partitions", "list"), ["--token", "MARCONI_AUTH_TOKEN"]),
        (("node",), ["--storage", "--partition"]),
        (("migrate",), ["move", "status", "list", "cancel"]),
        (("migrate", "move"), ["PROJECT", "QUEUE", "--to", "--wait", "--wait-timeout", "exit 4"]),
        (("migrate", "cancel"), ["ID", "exit 1", "switched"]),
        (("migrate", "list"), ["--all", "--json"]),
        (("drain",), ["PARTITION", "--wait", "--wait-timeout", "--interval", "owns nothing"]),
        (("rebalance",), ["--dry-run", "--max-moves", "--tolerance", "10%"]),
        (("worker",), ["--catalog", "--catalog-prefix", "MARCONI_WORKER_"]),
    ],
)
def test_help(
    argv: tuple[str, ...], expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*argv, "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in expected:
        assert word in text


def test_proxy_auth_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.settings import AuthMode

    for name in ("MARCONI_AUTH", "MARCONI_KEYSTONE_URL", "MARCONI_KEYSTONE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_settings(build_parser().parse_args(["proxy"])).auth is AuthMode.NOAUTH
    monkeypatch.setenv("MARCONI_AUTH", "keystone")
    monkeypatch.setenv("MARCONI_KEYSTONE_URL", "http://keystone.env:5000")
    monkeypatch.setenv("MARCONI_KEYSTONE_PASSWORD", "s3cret")
    monkeypatch.setenv("MARCONI_TOKEN_CACHE_TTL", "30")
    args = ["proxy", "--keystone-username", "marconi", "--keystone-project", "svc"]
    settings = proxy_settings(build_parser().parse_args([*args, "--token-cache-size", "5"]))
    assert settings.auth is AuthMode.KEYSTONE
    assert settings.keystone_url == "http://keystone.env:5000"
    assert (settings.keystone_username, settings.keystone_project) == ("marconi", "svc")
    assert settings.keystone_password == "s3cret" and "s3cret" not in repr(settings)
    assert (settings.token_cache_size, settings.token_cache_ttl) == (5, 30.0)
    flags = build_parser().parse_args(["proxy", "--auth", "noauth"])
    assert proxy_settings(flags).auth is AuthMode.NOAUTH


@pytest.mark.parametrize(
    ("env", "argv", "message"),
    [
        ({}, ["--auth", "keystone"], "--keystone-url"),
        ({"MARCONI_AUTH": "keystone"}, ["--keystone-url", "keystone:5000"], "--keystone-url"),
        (
            {"MARCONI_AUTH": "keystone", "MARCONI_KEYSTONE_URL": "http://k:5000"},
            ["--keystone-username", "marconi"],
            "MARCONI_KEYSTONE_PASSWORD",
        ),
        ({}, ["--host", "0.0.0.0"], "--insecure-noauth"),
        ({"MARCONI_PROXY_HOST": "10.1.2.3"}, ["--auth", "noauth"], "'10.1.2.3'"),
        ({}, ["--host", ""], "serves only on loopback"),
        ({"MARCONI_INSECURE_NOAUTH": "false"}, ["--host", "::"], "--insecure-noauth"),
    ],
)
def test_proxy_auth_settings_that_cannot_work_exit_2(
    env: dict[str, str],
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from marconi.cli import main

    for name in ("MARCONI_AUTH", "MARCONI_KEYSTONE_URL", "MARCONI_KEYSTONE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MARCONI_PROXY_HOST", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["proxy", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"])
def test_noauth_serves_on_loopback_addresses(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.settings import AuthMode

    monkeypatch.delenv("MARCONI_AUTH", raising=False)
    settings = proxy_settings(build_parser().parse_args(["proxy", "--host", host]))
    assert (settings.auth, settings.insecure_noauth) == (AuthMode.NOAUTH, False)


def test_noauth_elsewhere_only_when_named_insecure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARCONI_AUTH", raising=False)
    monkeypatch.setenv("MARCONI_INSECURE_NOAUTH", "true")
    settings = proxy_settings(build_parser().parse_args(["proxy", "--host", "0.0.0.0"]))
    assert settings.insecure_noauth and settings.host == "0.0.0.0"
    monkeypatch.delenv("MARCONI_INSECURE_NOAUTH")
    args = ["proxy", "--host", "0.0.0.0", "--auth", "keystone", "--keystone-url", "http://k:5000"]
    assert not proxy_settings(build_parser().parse_args(args)).insecure_noauth


def test_proxy_migration_limits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from catalog.registry import MigrationLimits
    from marconi.cli import main

    monkeypatch.setenv("MARCONI_MIGRATION_COOLDOWN", "60")
    monkeypatch.setenv("MARCONI_MIGRATIONS_IN", "3")
    args = build_parser().parse_args(["proxy", "--migrations-out", "2"])
    assert proxy_settings(args).migration_limits == MigrationLimits(2, 3, 60.0)
    args = build_parser().parse_args(["proxy", "--migration-cooldown", "0"])
    assert proxy_settings(args).migration_limits == MigrationLimits(1, 3, 0.0)
    for bad in (["--migrations-in", "0"], ["--migration-cooldown", "-1"]):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(["proxy", *bad])
        assert exited.value.code == 2
    monkeypatch.setenv("MARCONI_MIGRATIONS_OUT", "0")
    assert main(["proxy"]) == 2
    assert "marconi: proxy: migrations_out" in capsys.readouterr().err


def test_proxy_placement_key() -> None:
    from proxy.settings import PlacementKey

    args = build_parser().parse_args(["proxy", "--placement-key", "project"])
    assert proxy_settings(args).placement_key is PlacementKey.PROJECT


def test_proxy_limits_from_env_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARCONI_RATE_LIMIT", "50")
    monkeypatch.setenv("MARCONI_CONCURRENCY_LIMIT", "8")
    from_env = proxy_settings(build_parser().parse_args(["proxy", "--log-json"])).limits
    assert (from_env.rate, from_env.burst, from_env.concurrency) == (50.0, 0, 8)
    assert from_env.capacity == 50.0
    args = build_parser().parse_args(["proxy", "--rate-limit", "2.5", "--rate-burst", "10"])
    limits = proxy_settings(args).limits
    assert (limits.rate, limits.burst, limits.concurrency) == (2.5, 10, 8)
    assert limits.enabled


def test_proxy_limits_are_off_by_default() -> None:
    assert not proxy_settings(build_parser().parse_args(["proxy"])).limits.enabled


def test_worker_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARCONI_CATALOG_URL", "http://etcd-a:2379")
    monkeypatch.setenv("MARCONI_CATALOG_PREFIX", "/env/")
    monkeypatch.setenv("MARCONI_WORKER_BATCH", "42")
    settings = worker_settings(build_parser().parse_args(["worker"]))
    assert (settings.catalog_url, settings.key_prefix, settings.batch) == (
        "http://etcd-a:2379",
        "/env/",
        42,
    )
    flags = ["worker", "--catalog", "http://e:1", "--catalog-prefix", "/x/", "--log-json"]
    settings = worker_settings(build_parser().parse_args([*flags, "--log-level", "debug"]))
    assert (settings.catalog_url, settings.key_prefix) == ("http://e:1", "/x/")
    assert (settings.log_level, settings.log_json, settings.batch) == ("debug", True, 42)


def test_worker_refuses_settings_that_cannot_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from marconi.cli import main

    monkeypatch.setenv("MARCONI_WORKER_LEASE_TTL", "1")
    assert main(["worker"]) == 2
    assert "marconi: worker: lease_ttl" in capsys.readouterr().err


def test_workers_and_drain_time_from_env_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    parse = build_parser().parse_args
    assert (node_settings(parse(["node"])).workers, proxy_settings(parse(["proxy"])).workers) == (
        1,
        1,
    )
    monkeypatch.setenv("MARCONI_WORKERS", "3")
    monkeypatch.setenv("MARCONI_PROXY_WORKERS", "4")
    monkeypatch.setenv("MARCONI_DRAIN_TIMEOUT", "7")
    node, proxy = node_settings(parse(["node"])), proxy_settings(parse(["proxy"]))
    assert (node.workers, node.drain_timeout, proxy.workers, proxy.drain_timeout) == (3, 7, 4, 7)
    node = node_settings(parse(["node", "--workers", "2", "--drain-timeout", "2.5"]))
    proxy = proxy_settings(parse(["proxy", "--workers", "5", "--drain-timeout", "0"]))
    assert (node.workers, node.drain_timeout, proxy.workers, proxy.drain_timeout) == (2, 2.5, 5, 0)


@pytest.mark.parametrize("command", ["node", "proxy", "dev"])
def test_workers_must_be_at_least_one(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--workers", "0"])
    assert exited.value.code == 2 and "--workers" in capsys.readouterr().err


@pytest.mark.parametrize("variable", ["MARCONI_WORKERS", "MARCONI_PROXY_WORKERS"])
def test_zero_workers_from_the_environment_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str
) -> None:
    monkeypatch.setenv(variable, "0")
    command = "node" if variable == "MARCONI_WORKERS" else "proxy"
    assert main([command]) == 2
    assert "workers must be at least 1" in capsys.readouterr().err
