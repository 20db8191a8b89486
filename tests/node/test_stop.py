"""SIGTERM of a real `marconi node` (one process, or a supervisor and its workers): it stops
accepting, answers the request in flight, exits 0, and what it answered 201 is stored."""

from __future__ import annotations

import http.client
import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services import node_process
from tests.stops import CLIENT, HalfPost


def stored_bodies(url: str, queue: str) -> list[object]:
    request = urllib.request.Request(
        f"{url}/v2/queues/{queue}/messages?echo=true&include_claimed=true", headers=CLIENT
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        raw = answer.read()
    return [m["body"] for m in json.loads(raw)["messages"]] if raw else []


@pytest.mark.parametrize("flags", [(), ("--workers", "2")], ids=["one process", "two workers"])
def test_sigterm_answers_the_request_in_flight_then_exits_0(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    storage = f"sqlite:///{tmp_path}/p1.db"
    with node_process(storage, "p1", tmp_path, *flags) as node:
        port = int(node.url.rsplit(":", 1)[1])
        post = HalfPost(port, "orders", {"order": 7})
        time.sleep(0.3)  # the head is read: the request is in flight
        node.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert node.proc.poll() is None, "the node left with a request in flight"
        status, answer = post.finish()
        assert status == 201, answer
        assert node.proc.wait(15) == 0
    with node_process(storage, "p1", tmp_path) as again:
        assert stored_bodies(again.url, "orders") == [{"order": 7}]


def test_idle_keep_alive_connections_do_not_hold_the_stop(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/p1.db"
    with node_process(storage, "p1", tmp_path, "--drain-timeout", "120") as node:
        port = int(node.url.rsplit(":", 1)[1])
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        idle.request("GET", "/v2/queues", headers=CLIENT)
        answer = idle.getresponse()
        answer.read()
        assert answer.status in (200, 204) and not answer.will_close  # kept alive, now idle
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(60) == 0  # closed at once: no wait for the 120 s drain time
        idle.close()
