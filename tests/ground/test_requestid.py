"""Request ids: `req-<uuid4>`, unique, and drawn anew in a forked child."""

from __future__ import annotations

import os
import uuid

from ground.requestid import new_request_id


def test_request_ids_are_unique_uuid4s() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for rid in ids:
        assert rid.startswith("req-")
        parsed = uuid.UUID(rid[4:])
        assert str(parsed) == rid[4:] and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_a_forked_child_draws_its_own_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child.rsplit("-", 1)[0] != new_request_id().rsplit("-", 1)[0]
