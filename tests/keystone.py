"""A real Keystone for tests: PyPI's `keystone` on SQLite, in its own virtual environment.

`make keystone` builds the environment and exports its path as KEYSTONE_VENV. One Keystone runs
per test session: `keystone-manage` sets it up (db_sync, fernet_setup, credential_setup,
bootstrap), its WSGI application is served on 127.0.0.1 by the standard library's server, and
the Keystone API then creates two projects with a member each, an operator with the admin role
and the proxy's service user. Tokens are cached here, one per user and project.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from tests.services import free_port, stop, wait_for_port

ADMIN_PASSWORD = "bootstrap-secret"
DOMAIN = {"id": "default"}

# keystone-manage's steps, run by its own entry point in one interpreter (one start instead of
# four: about 5 s instead of 20). Keystone's config object is reset between steps.
SETUP = """
import os, sys
from keystone.cmd import cli
conf, password = sys.argv[1], sys.argv[2]
owner = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
for step in (["db_sync"], ["fernet_setup", *owner], ["credential_setup", *owner],
             ["bootstrap", "--bootstrap-password", password]):
    cli.main(argv=["keystone-manage", "--config-file", conf, *step])
    cli.CONF.clear()
"""

# Keystone's WSGI application (keystone.wsgi.api) on a threaded wsgiref server. oslo.config reads
# sys.argv, so it must hold nothing but the program name by then.
SERVE = """
import socketserver, sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
port = int(sys.argv[1])
del sys.argv[1:]
from keystone.wsgi.api import application
class Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
class Handler(WSGIRequestHandler):
    def log_message(self, *args):
        pass
make_server("127.0.0.1", port, application, Server, Handler).serve_forever()
"""

CONFIG = """
[DEFAULT]
log_file = {data}/keystone.log
[database]
connection = sqlite:///{data}/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = {data}/fernet-keys
[fernet_receipts]
key_repository = {data}/fernet-keys
[credential]
key_repository = {data}/credential-keys
[identity]
# the fewest bcrypt rounds: a password check costs milliseconds, not half a second
password_hash_rounds = 4
"""


REQUIREMENTS = Path(__file__).parent / "keystone-requirements.txt"


def keystone_venv() -> Path:
    """KEYSTONE_VENV (the Makefile exports it), else where `make keystone` builds it: named by
    the hash of the requirements, so a plain `pytest` finds it too."""
    if venv := os.environ.get("KEYSTONE_VENV"):
        return Path(venv)
    pin = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return Path.home() / ".cache" / "marconi" / f"keystone-{pin}"


def keystone_python() -> str:
    python = keystone_venv() / "bin" / "python"
    if not python.exists() or not (python.parent.parent / ".installed").exists():
        raise RuntimeError(
            "Keystone not found: run `make keystone` (it exports KEYSTONE_VENV) or set "
            "KEYSTONE_VENV to a virtual environment with tests/keystone-requirements.txt"
        )
    return str(python)


@dataclass(frozen=True)
class User:
    name: str
    password: str
    project: str  # the project its tokens are scoped to


class KeystoneError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"Keystone answered {status}: {body}")
        self.status = status


@dataclass
class Keystone:
    url: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    projects: dict[str, str] = field(default_factory=dict)  # name -> id
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        subject: str | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        if subject:
            headers["X-Subject-Token"] = subject
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + "/v3" + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw, status, got = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            with exc:
                raw, status, got = exc.read(), exc.code, dict(exc.headers)
        return status, (json.loads(raw) if raw else None), got

    def expect(self, status: int, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        got, document, _ = self.call(method, path, body, **kw)
        if got != status:
            raise KeystoneError(got, document)
        return document

    def login(self, user: User, scope: str = "project") -> str:
        """A new token for `user` (password method), scoped to its project, to the system
        (`scope="system"`, for a user with a role on it) or to nothing (`scope=""`)."""
        scopes = {
            "project": {"project": {"name": user.project, "domain": DOMAIN}},
            "system": {"system": {"all": True}},
        }
        body: dict[str, Any] = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user.name, "domain": DOMAIN, "password": user.password}
                    },
                },
            }
        }
        if scope:
            body["auth"]["scope"] = scopes[scope]
        status, document, headers = self.call("POST", "/auth/tokens", body)
        if status != 201:
            raise KeystoneError(status, document)
        return headers["X-Subject-Token"]

    def token(self, user: User) -> str:
        """The session's token for `user` (one login per user and project)."""
        key = (user.name, user.project)
        if key not in self._tokens:
            self._tokens[key] = self.login(user)
        return self._tokens[key]

    def revoke(self, token: str) -> None:
        self.expect(204, "DELETE", "/auth/tokens", token=token, subject=token)

    def short_token(self, user: User, seconds: float) -> tuple[str, float]:
        """A token that expires in about `seconds` (Keystone caps a token at the expiry of the
        application credential it came from); returns it with its expiry (Unix time).

        Making one takes a few Keystone calls, which on a loaded machine can eat most of a
        short lifetime; then the lifetime is doubled and another is made, so the caller
        always gets a token that is still valid for at least three quarters of `seconds`."""
        lifetime = seconds
        while True:
            token, expires_at = self._token_expiring_in(user, lifetime)
            if expires_at - time.time() >= 0.75 * seconds or lifetime >= 16 * seconds:
                return token, expires_at
            lifetime *= 2

    def _token_expiring_in(self, user: User, seconds: float) -> tuple[str, float]:
        token = self.token(user)
        me = self.expect(200, "GET", "/auth/tokens", token=token, subject=token)["token"]["user"]
        expires = datetime.now(UTC) + timedelta(seconds=seconds)
        credential = self.expect(
            201,
            "POST",
            f"/users/{me['id']}/application_credentials",
            {
                "application_credential": {
                    "name": f"short-{time.monotonic_ns()}",
                    "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                }
            },
            token=token,
        )["application_credential"]
        body = {
            "auth": {
                "identity": {
                    "methods": ["application_credential"],
                    "application_credential": {
                        "id": credential["id"],
                        "secret": credential["secret"],
                    },
                }
            }
        }
        status, document, headers = self.call("POST", "/auth/tokens", body)
        if status != 201:
            raise KeystoneError(status, document)
        issued = datetime.fromisoformat(document["token"]["expires_at"]).timestamp()
        return headers["X-Subject-Token"], issued


ADMIN = User("admin", ADMIN_PASSWORD, "admin")  # keystone-manage bootstrap's
ALICE = User("alice", "alice-secret", "alpha")  # member of alpha
BOB = User("bob", "bob-secret", "beta")  # member of beta
OPERATOR = User("operator", "operator-secret", "alpha")  # admin role on alpha
SERVICE = User("marconi", "marconi-secret", "service")  # the proxy's service user


def _populate(keystone: Keystone) -> None:
    """Projects, users and role grants, through the Keystone API as the bootstrap admin."""
    admin = keystone.token(ADMIN)
    keystone.projects["admin"] = keystone.expect(200, "GET", "/projects?name=admin", token=admin)[
        "projects"
    ][0]["id"]
    roles = {
        r["name"]: r["id"] for r in keystone.expect(200, "GET", "/roles", token=admin)["roles"]
    }
    if "service" not in roles:
        created = keystone.expect(201, "POST", "/roles", {"role": {"name": "service"}}, token=admin)
        roles["service"] = created["role"]["id"]
    for name in ("alpha", "beta", "service"):
        body = {"project": {"name": name, "domain_id": "default"}}
        project = keystone.expect(201, "POST", "/projects", body, token=admin)["project"]
        keystone.projects[name] = project["id"]
    for user, role in (
        (ALICE, "member"),
        (BOB, "member"),
        (OPERATOR, "admin"),
        (SERVICE, "service"),
    ):
        body = {"user": {"name": user.name, "password": user.password, "domain_id": "default"}}
        user_id = keystone.expect(201, "POST", "/users", body, token=admin)["user"]["id"]
        project_id = keystone.projects[user.project]
        path = f"/projects/{project_id}/users/{user_id}/roles/{roles[role]}"
        keystone.expect(204, "PUT", path, token=admin)


@contextmanager
def keystone(data: Path) -> Iterator[Keystone]:
    """A Keystone set up in `data`, served on a free port, stopped on exit."""
    python = keystone_python()
    data.mkdir(parents=True, exist_ok=True)
    config = data / "keystone.conf"
    config.write_text(CONFIG.format(data=data))
    env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(config)}
    setup = subprocess.run(
        [python, "-c", SETUP, str(config), ADMIN_PASSWORD],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if setup.returncode != 0:
        raise RuntimeError(f"keystone-manage failed: {setup.stderr.decode()[-2000:]}")
    port = free_port()
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [python, "-c", SERVE, str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port, proc, timeout=60)
        server = Keystone(f"http://127.0.0.1:{port}", proc, log)
        _populate(server)
        yield server
    finally:
        stop(proc)
        log.close()
