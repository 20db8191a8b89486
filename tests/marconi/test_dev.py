"""`marconi dev`: its registration against a real etcd, and whole local clusters end to end."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.records import PartitionState
from marconi.dev import DevPartition, DevSettings, banner, etcd_binary, register, run, start_worker
from marconi.postgres import EmbeddedPostgres
from marconi.supervisor import Supervisor
from tests.conftest import unique_prefix
from tests.services import Etcd, free_port, start_etcd

CLIENT = {"Client-ID": "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60", "X-Project-ID": "demo"}


def test_etcd_binary_is_found() -> None:
    assert os.access(etcd_binary(), os.X_OK)


async def test_register_is_idempotent_and_keeps_operator_changes(etcd_server: Etcd) -> None:
    prefix = unique_prefix()
    nodes = [
        DevPartition("p1", "http://127.0.0.1:9001", "sqlite:///p1"),
        DevPartition("p2", "http://h:2", "x"),
    ]
    await register(etcd_server.url, prefix, nodes)
    await register(etcd_server.url, prefix, nodes)

    store = EtcdStore(etcd_server.url)
    try:
        catalog = Catalog(store, Keys(prefix))
        assert [(p.name, p.nodes) for p in await catalog.partitions()] == [
            ("p1", ("http://127.0.0.1:9001",)),
            ("p2", ("http://h:2",)),
        ]
        await catalog.update_partition("p1", weight=5, state=PartitionState.READ_ONLY)
        # The next run found p1's node on another port: only the node list changes.
        await register(etcd_server.url, prefix, [DevPartition("p1", "http://127.0.0.1:9005", "x")])
        p1 = await catalog.partition("p1")
        assert (p1.nodes, p1.weight, p1.state) == (
            ("http://127.0.0.1:9005",),
            5,
            PartitionState.READ_ONLY,
        )
    finally:
        await store.close()


def test_banner_tells_how_to_use_the_cluster(tmp_path: Path) -> None:
    nodes = [DevPartition("p1", "http://127.0.0.1:8889", "sqlite:///d/p1.db")]
    text = banner("http://127.0.0.1:8888", "http://127.0.0.1:2379", nodes, tmp_path)
    assert "endpoint   http://127.0.0.1:8888" in text
    assert "curl -i -H 'Client-ID: " in text and "/v2/queues/orders" in text
    assert "partitions list" in text and "MARCONI_URL" not in text
    assert "migrate move demo orders --to" in text and "rebalance --dry-run" in text
    other = banner("http://127.0.0.1:9999", "http://127.0.0.1:2379", nodes, tmp_path)
    assert "export MARCONI_URL=http://127.0.0.1:9999" in other


def test_a_busy_port_stops_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run(DevSettings(port=port, data=tmp_path)) == 1
    assert f"port {port} is in use" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_the_worker_is_started_as_a_child(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], etcd_server: Etcd
) -> None:
    supervisor = Supervisor(tmp_path)
    prefix = unique_prefix()
    try:
        child = start_worker(supervisor, etcd_server.url, prefix)
        assert child is not None and supervisor.children == [child]
        argv = ["worker", "--catalog", etcd_server.url, "--catalog-prefix", prefix]
        assert child.proc.args[-5:] == argv  # type: ignore[index]
        assert f"started worker       pid {child.pid}" in capsys.readouterr().out
        time.sleep(0.5)
        assert child.proc.poll() is None, child.tail()
    finally:
        supervisor.stop_all()
    assert child.proc.poll() is not None


# --- end to end ----------------------------------------------------------------------------------


class Dev:
    """A `marconi dev` process; its output is read on a thread so waits can time out."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no {pattern!r} in the output:\n{''.join(self.output)}")

    def rest(self, timeout: float = 30.0) -> str:
        self.proc.wait(timeout)
        self.reader.join(5)  # it ends at the pipe's end of file
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)

    def pid_of(self, name: str) -> int:
        found = re.search(rf"started {name}\s+pid (\d+)", "".join(self.output))
        assert found, self.output
        return int(found.group(1))

    @property
    def pids(self) -> list[int]:
        return [int(m) for m in re.findall(r"pid (\d+)", "".join(self.output))]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return True
    return state == "Z"  # ended, not yet reaped by whoever adopted it


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, children of children included."""
    found: set[int] = set()
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return found
    for child in map(int, children):
        found |= {child, *descendants(child)}
    return found


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {**CLIENT, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return response.status, json.loads(raw) if raw else None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Dev, str]]:
    """`marconi dev` with two partitions over its own etcd, up and printing its endpoint."""
    with dev_cluster(tmp_path) as started:
        yield started


@contextmanager
def dev_cluster(tmp_path: Path, *flags: str) -> Iterator[tuple[Dev, str]]:
    etcd = start_etcd(tmp_path / "etcd")
    port = free_port()
    dev = Dev(
        [
            sys.executable,
            "-m",
            "marconi.cli",
            "dev",
            *("--port", str(port), "--partitions", "2"),
            *("--data", str(tmp_path / "data"), "--etcd", etcd.url),
            *flags,
        ]
    )
    try:
        url = dev.wait_for(r"endpoint\s+(http://\S+)").group(1)
        assert url == f"http://127.0.0.1:{port}"
        yield dev, url
    finally:
        if dev.proc.poll() is None:
            dev.proc.kill()
            dev.proc.wait()
        dev.reader.join(5)
        assert dev.proc.stdout is not None
        dev.proc.stdout.close()
        for pid in dev.pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        etcd.stop()


@pytest.mark.slow
def test_dev_runs_a_cluster_and_one_sigint_stops_it(cluster: tuple[Dev, str]) -> None:
    dev, url = cluster
    assert len(dev.pids) == 4  # two nodes, the worker, the proxy; etcd was given

    status, _ = http("PUT", f"{url}/v2/queues/orders")
    assert status in (201, 204)
    status, posted = http(
        "POST", f"{url}/v2/queues/orders/messages", {"messages": [{"body": {"order": 1}}]}
    )
    assert status == 201 and len(posted["resources"]) == 1
    status, listed = http("GET", f"{url}/v2/queues/orders/messages?echo=true")
    assert status == 200
    assert [m["body"] for m in listed["messages"]] == [{"order": 1}]

    cli = subprocess.run(
        [sys.executable, "-m", "marconi.cli", "partitions", "list", "--json", "--url", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    partitions = json.loads(cli.stdout)["partitions"]
    assert [p["name"] for p in partitions] == ["p1", "p2"]
    assert all(p["state"] == "active" and len(p["nodes"]) == 1 for p in partitions)

    dev.proc.send_signal(signal.SIGINT)
    output = dev.rest()
    assert dev.proc.returncode == 0, output
    assert "Stopped proxy" in output
    assert all(gone(pid) for pid in dev.pids), output


@pytest.mark.slow
@pytest.mark.postgresql
def test_dev_runs_its_partitions_on_postgresql(tmp_path: Path) -> None:
    with dev_cluster(tmp_path, "--backend", "postgresql") as (dev, url):
        storage = dev.wait_for(r"p2\s+http://\S+\s+(\S+)").group(1)
        assert re.fullmatch(r"postgresql://postgres@127\.0\.0\.1:\d+/marconi_p2", storage)
        postgres = dev.pid_of("postgresql")
        status, posted = http(
            "POST", f"{url}/v2/queues/orders/messages", {"messages": [{"body": {"order": 1}}]}
        )
        assert status == 201
        status, listed = http("GET", f"{url}/v2/queues/orders/messages?echo=true")
        assert [m["body"] for m in listed["messages"]] == [{"order": 1}]
        assert (tmp_path / "data" / "postgresql" / "pgdata").exists()

        dev.proc.send_signal(signal.SIGINT)
        output = dev.rest()
        assert dev.proc.returncode == 0, output
        assert f"Stopped postgresql (pid {postgres})" in output
        assert all(gone(pid) for pid in dev.pids), output
    EmbeddedPostgres(tmp_path / "data" / "postgresql", free_port()).remove()  # dev keeps it


@pytest.mark.slow
def test_a_child_dying_stops_the_rest(cluster: tuple[Dev, str]) -> None:
    dev, _ = cluster
    os.kill(dev.pid_of("node p1"), signal.SIGKILL)
    output = dev.rest()
    assert dev.proc.returncode == 1, output
    assert "node-p1" in output and "exited" in output
    assert all(gone(pid) for pid in dev.pids), output


@pytest.mark.slow
def test_a_sigkilled_dev_leaves_no_process_behind(tmp_path: Path) -> None:
    with dev_cluster(tmp_path, "--workers", "2") as (dev, url):
        status, posted = http(
            "POST", f"{url}/v2/queues/orders/messages", {"messages": [{"body": 1}]}
        )
        assert status == 201
        everyone = descendants(dev.proc.pid)
        # Two nodes and the proxy, each a supervisor of two workers, a deliverer process under
        # each node worker, and the migration worker.
        assert len(everyone) == 14, everyone
        dev.proc.kill()
        dev.proc.wait()
        deadline = time.monotonic() + 30
        while not all(gone(pid) for pid in everyone):
            assert time.monotonic() < deadline, [p for p in everyone if not gone(p)]
            time.sleep(0.1)


def marconi_cli(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marconi.cli", *argv, "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_dev_moves_and_drains_queues_with_its_worker(cluster: tuple[Dev, str]) -> None:
    dev, url = cluster
    for name in ("orders", "a", "b", "c"):
        assert http("PUT", f"{url}/v2/queues/{name}")[0] in (201, 204)
    messages = {"messages": [{"body": {"order": i}} for i in range(3)]}
    assert http("POST", f"{url}/v2/queues/orders/messages", messages)[0] == 201

    where = marconi_cli(url, "queues", "where", "demo", "orders", "--json")
    source = json.loads(where.stdout)["partition"]
    target = "p2" if source == "p1" else "p1"
    moved = marconi_cli(
        url, "migrate", "move", "demo", "orders", "--to", target, "--wait", "--json",
        "--wait-timeout", "60", "--interval", "0.2",
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["phase"] == "DONE"
    status, listed = http("GET", f"{url}/v2/queues/orders/messages?echo=true")
    assert status == 200 and [m["body"]["order"] for m in listed["messages"]] == [0, 1, 2]

    # Drain the other partition: everything ends on `target`, orders included.
    drained = marconi_cli(
        url, "drain", source, "--wait", "--wait-timeout", "90", "--interval", "0.2"
    )
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert f"Drained {source}" in drained.stdout
    for name in ("orders", "a", "b", "c"):
        found = json.loads(marconi_cli(url, "queues", "where", "demo", name, "--json").stdout)
        assert found["partition"] == target
    listed_all = json.loads(marconi_cli(url, "migrate", "list", "--all", "--json").stdout)
    assert {m["phase"] for m in listed_all["migrations"]} == {"DONE"}
