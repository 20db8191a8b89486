"""A small synchronous client of the proxy's admin API, with one error per exit code.

The CLI runs one request per invocation, so the standard library's urllib is enough: no event
loop, no connection pool. Every HTTP failure is translated here, once, into `AdminError`.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from marconi.login import LoginFailed, login

DEFAULT_URL = "http://127.0.0.1:8888"
ADMIN_HEADERS = {"X-Roles": "admin", "Accept": "application/json", "User-Agent": "marconi-cli"}


class AdminError(Exception):
    """Root of the client's errors; `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Refused(AdminError):
    """The cluster said no: invalid, not found, conflict, forbidden, or it failed (exit 1)."""


class Invalid(AdminError):
    """The command cannot be sent as given (a malformed --url): a usage error (exit 2)."""

    exit_code = 2


class Unreachable(AdminError):
    """No answer: connection refused, timeout, or the proxy says its backends are down (exit 3)."""

    exit_code = 3


class TimedOut(AdminError):
    """A `--wait` outlasted its `--wait-timeout`; the work goes on in the cluster (exit 4)."""

    exit_code = 4


def default_url() -> str:
    return os.environ.get("MARCONI_URL", DEFAULT_URL)


def default_token() -> str | None:
    return os.environ.get("MARCONI_AUTH_TOKEN") or None


def segment(value: str) -> str:
    """One URL path segment; an empty project travels as "_", as in the catalog's keys."""
    return quote(value or "_", safe="")


def _expect(doc: Any, key: str | None = None) -> Any:
    """The answer, or its `key`, checked for shape: a wrong answer is an error, not a traceback."""
    if not isinstance(doc, dict) or (key is not None and key not in doc):
        raise Refused(f"unexpected answer from the admin API: {doc!r:.200}")
    return doc if key is None else doc[key]


def _with(doc: Any, key: str) -> Any:
    """The whole answer, once checked to hold `key`."""
    _expect(doc, key)
    return doc


def _error_for(status: int, body: bytes) -> AdminError:
    try:
        doc = json.loads(body)
        message = str(doc.get("description") or doc.get("title") or "")
    except (ValueError, AttributeError):
        message = ""
    message = message or f"HTTP {status}"
    if status in (502, 503, 504):
        return Unreachable(message, status)
    return Refused(message, status)


class AdminClient:
    def __init__(
        self, url: str | None = None, timeout: float = 10.0, token: str | None = None
    ) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.timeout = timeout
        # A Keystone token with the admin role, for a proxy run with `--auth keystone` (which
        # ignores X-Roles); never printed, not even in errors. Without one, the OS_* variables
        # (if set) get one from Keystone at the first request.
        self.token = token or default_token()
        self._logged_in = self.token is not None

    def _login(self) -> None:
        self._logged_in = True
        try:
            self.token = login(os.environ, self.timeout)
        except LoginFailed as exc:
            if exc.reachable:
                raise Refused(str(exc), exc.status) from None
            raise Unreachable(str(exc), exc.status) from None

    def request(
        self, method: str, path: str, body: Any = None, also_ok: tuple[int, ...] = ()
    ) -> tuple[int, Any]:
        """Send one admin request; (status, parsed JSON or None) for a 2xx or an `also_ok`."""
        if not self._logged_in:
            self._login()
        headers = dict(ADMIN_HEADERS)
        if self.token:
            headers["X-Auth-Token"] = self.token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            request = urllib.request.Request(
                self.url + path, data=data, headers=headers, method=method
            )
        except ValueError as exc:
            raise Invalid(f"bad admin URL {self.url!r}: {exc}") from None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status: int = response.status
                raw: bytes = response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status, raw = exc.code, exc.read()
            if status not in also_ok:
                raise _error_for(status, raw) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(
                f"cannot reach the admin API at {self.url}: {reason} "
                "(is the proxy running? point elsewhere with --url or MARCONI_URL)"
            ) from None
        try:
            return status, (json.loads(raw) if raw else None)
        except ValueError:
            raise Refused(f"{method} {path}: the answer is not JSON", status) from None

    # --- partitions ------------------------------------------------------------------------------

    def partitions(self) -> list[dict[str, Any]]:
        _, doc = self.request("GET", "/admin/partitions")
        found: list[dict[str, Any]] = _expect(doc, "partitions")
        return found

    def add_partition(
        self, name: str, nodes: list[str], weight: int, state: str, storage: str = ""
    ) -> tuple[bool, dict[str, Any]]:
        """Create a partition; (True, it) when created, (False, it) when it existed identical."""
        body = {"nodes": nodes, "weight": weight, "state": state, "storage": storage}
        status, doc = self.request("PUT", f"/admin/partitions/{segment(name)}", body)
        return status == 201, doc if isinstance(doc, dict) else {"name": name, **body}

    def update_partition(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        _, doc = self.request("PATCH", f"/admin/partitions/{segment(name)}", changes)
        updated: dict[str, Any] = _expect(doc)
        return updated

    def remove_partition(self, name: str, *, force: bool = False) -> None:
        query = "?force=true" if force else ""
        self.request("DELETE", f"/admin/partitions/{segment(name)}{query}")

    # --- placements and pins ---------------------------------------------------------------------

    def placement(self, project: str, queue: str) -> dict[str, Any]:
        _, doc = self.request("GET", f"/admin/placements/{segment(project)}/{segment(queue)}")
        found: dict[str, Any] = _expect(doc)
        return found

    def pins(self) -> list[dict[str, Any]]:
        _, doc = self.request("GET", "/admin/pins")
        found: list[dict[str, Any]] = _expect(doc, "pins")
        return found

    def pin(self, project: str, partition: str) -> None:
        self.request("PUT", f"/admin/pins/{segment(project)}", {"partition": partition})

    def unpin(self, project: str) -> None:
        self.request("DELETE", f"/admin/pins/{segment(project)}")

    # --- migrations, drain and rebalance ---------------------------------------------------------

    def create_migration(
        self, project: str, queue: str, target: str, *, topic: bool = False
    ) -> dict[str, Any]:
        """Move a queue, or with `topic` the topic of that name."""
        body = {"project": project, "topic" if topic else "queue": queue, "to": target}
        _, doc = self.request("POST", "/admin/migrations", body)
        found: dict[str, Any] = _with(doc, "id")
        return found

    def migrations(self, active: bool = True) -> list[dict[str, Any]]:
        _, doc = self.request("GET", "/admin/migrations" + ("?active=true" if active else ""))
        found: list[dict[str, Any]] = _expect(doc, "migrations")
        return found

    def migration(self, migration_id: str) -> dict[str, Any]:
        _, doc = self.request("GET", f"/admin/migrations/{segment(migration_id)}")
        found: dict[str, Any] = _with(doc, "phase")
        return found

    def cancel_migration(self, migration_id: str) -> dict[str, Any]:
        _, doc = self.request("DELETE", f"/admin/migrations/{segment(migration_id)}")
        found: dict[str, Any] = _with(doc, "phase")
        return found

    def drain(self, partition: str) -> dict[str, Any]:
        _, doc = self.request("POST", f"/admin/partitions/{segment(partition)}/drain", {})
        found: dict[str, Any] = _with(doc, "remaining")
        return found

    def rebalance(self, dry_run: bool, max_moves: int, tolerance: float) -> dict[str, Any]:
        body = {"dry_run": dry_run, "max_moves": max_moves, "tolerance": tolerance}
        _, doc = self.request("POST", "/admin/rebalance", body)
        found: dict[str, Any] = _with(doc, "plan")
        return found

    def loads(self) -> dict[str, Any]:
        _, doc = self.request("GET", "/admin/loads")
        found: dict[str, Any] = _with(doc, "partitions")
        return found

    # --- health ----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        # A health check may answer 503 with the same report when something is down; a 503
        # without a report is the proxy itself failing.
        status, doc = self.request("GET", "/admin/health", also_ok=(503,))
        if status == 503 and not (isinstance(doc, dict) and "catalog" in doc):
            raise _error_for(status, json.dumps(doc).encode())
        found: dict[str, Any] = _expect(doc)
        return found
