"""The proxy against the reverse proxy a user would otherwise deploy: Debian's nginx in front of
the same node, for the CPU time each spends per forwarded request.

One SQLite partition of one node process, registered in a real etcd; a `marconi proxy` and an
nginx (`proxy_pass` to an upstream with a keepalive pool, one process: `master_process off`)
both in front of it. Each scenario runs against nginx, then the proxy, `rounds` times over, so
a change in the machine's background load falls on both alike. nginx runs from a configuration
written into the bench's temporary directory (its pid, logs and temporary files there too) and
is stopped by its process id.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.cluster import PARTITION, Target, nodes, proxy, ready, register, storage
from bench.scenarios import CONSUME_10, LIST_10, POST_1, Load, Measurement, Scenario, measure
from bench.scenarios import warm_up as warm
from catalog.records import Partition
from tests.services import etcd, free_port, stop

SCENARIOS = (POST_1, LIST_10, CONSUME_10)  # consuming last: it empties the queue


def nginx_binary() -> str:
    path = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if path is None:
        raise SystemExit("nginx not found: `make bench` installs it (apt-get install nginx)")
    return path


def nginx_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, timeout=10)
        return out.stderr.strip().rsplit("/", 1)[-1] or "unknown"  # nginx -v writes to stderr
    return "unknown"


CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream node {{
        server {node};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://node;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(node_url: str, prefix: Path) -> Iterator[Target]:
    """nginx in front of the node at `node_url` until the block ends."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    node = node_url.removeprefix("http://")
    conf.write_text(CONFIG.format(prefix=prefix, node=node, port=port))
    command = [nginx_binary(), "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    log_path = prefix / "stderr.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready(proc, command, port, log_path)
            yield Target("nginx", f"http://127.0.0.1:{port}", {"nginx": (proc.pid,)})
        finally:
            stop(proc)


@dataclass(frozen=True)
class Reference:
    """One scenario's rounds, against nginx and against the proxy, in the order they ran."""

    scenario: Scenario
    nginx: list[Measurement]
    proxy: list[Measurement]

    @staticmethod
    def _median(measurements: list[Measurement], role: str) -> float | None:
        values = [v for m in measurements if (v := m.cpu_us_per_request(role)) is not None]
        return statistics.median(values) if values else None

    @property
    def nginx_us(self) -> float | None:
        return self._median(self.nginx, "nginx")

    @property
    def proxy_us(self) -> float | None:
        return self._median(self.proxy, "proxy")

    @property
    def ratio(self) -> float | None:
        n, p = self.nginx_us, self.proxy_us
        return None if not n or not p else p / n


def compare_nginx(base: Path, load: Load, rounds: int) -> list[Reference]:
    with contextlib.ExitStack() as stack:
        catalog = stack.enter_context(etcd(base / "etcd"))
        uri = stack.enter_context(storage("sqlite", base / "node"))
        node_set = stack.enter_context(nodes(uri, 1, base / "node"))
        asyncio.run(register(catalog.url, Partition(PARTITION, nodes=(node_set.url,))))
        url, pid = stack.enter_context(proxy(catalog.url, base / "node"))
        marconi = Target("proxy", url, {"proxy": (pid,), "nodes": node_set.pids})
        ngx = stack.enter_context(nginx(node_set.url, base / "nginx"))
        ngx = Target("nginx", ngx.url, {**ngx.pids, "nodes": node_set.pids})
        print(
            f"== nginx at {ngx.url} and the proxy at {marconi.url}, before one node process "
            f"at {node_set.url}",
            flush=True,
        )
        warm(marconi)  # places the queue
        warm(ngx)
        rows = []
        for scenario in SCENARIOS:
            ran: dict[str, list[Measurement]] = {"nginx": [], "proxy": []}
            for _ in range(rounds):
                for target in (ngx, marconi):
                    ran[target.name].append(measure(target, scenario, load))
            rows.append(Reference(scenario, ran["nginx"], ran["proxy"]))
    return rows
