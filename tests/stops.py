"""A request in flight for as long as a test wants: a post whose body arrives in two halves, to
send a server SIGTERM between them. Real HTTP/1.1 over a socket; http.client reads the answer."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

CLIENT = {"Client-ID": "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60", "X-Project-ID": "stops"}


class HalfPost:
    """`POST /v2/queues/{queue}/messages` with `body`, of which only the first half is sent."""

    def __init__(self, port: int, queue: str, body: dict[str, Any]) -> None:
        raw = json.dumps({"messages": [{"body": body, "ttl": 3600}]}).encode()
        head = [
            f"POST /v2/queues/{queue}/messages HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            *(f"{name}: {value}" for name, value in CLIENT.items()),
            "Content-Type: application/json",
            f"Content-Length: {len(raw)}",
        ]
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        half = len(raw) // 2
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + raw[:half])
        self.rest = raw[half:]

    def finish(self) -> tuple[int, Any]:
        """Send the rest of the body; the status and the JSON answer."""
        self.sock.sendall(self.rest)
        answer = http.client.HTTPResponse(self.sock)
        try:
            answer.begin()
            data = answer.read()
        finally:
            answer.close()
            self.sock.close()
        return answer.status, json.loads(data) if data else None
