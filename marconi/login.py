"""A Keystone token for the admin CLI from the usual OpenStack variables, so scripts and the
chart's registration Job need no token minted by hand (a token expires; credentials do not).

Password (`OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME` or `OS_PROJECT_ID`, or
`OS_SYSTEM_SCOPE=all`) or application credential (`OS_APPLICATION_CREDENTIAL_ID` and
`OS_APPLICATION_CREDENTIAL_SECRET`), at `OS_AUTH_URL`. Domains default to `Default`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any


class LoginFailed(Exception):
    """Keystone refused the credentials (`reachable`), or could not be asked."""

    def __init__(self, message: str, reachable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.reachable = reachable
        self.status = status


def credentials(env: Mapping[str, str]) -> dict[str, Any] | None:
    """Keystone v3's `auth` document for the variables set, or None when none are."""
    if not env.get("OS_AUTH_URL"):
        return None
    if env.get("OS_APPLICATION_CREDENTIAL_ID"):
        return {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {
                    "id": env["OS_APPLICATION_CREDENTIAL_ID"],
                    "secret": env.get("OS_APPLICATION_CREDENTIAL_SECRET", ""),
                },
            }
        }
    if not env.get("OS_USERNAME"):
        return None
    user = {
        "name": env["OS_USERNAME"],
        "password": env.get("OS_PASSWORD", ""),
        "domain": {"name": env.get("OS_USER_DOMAIN_NAME", "Default")},
    }
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
    if env.get("OS_SYSTEM_SCOPE"):
        auth["scope"] = {"system": {"all": True}}
    elif env.get("OS_PROJECT_ID"):
        auth["scope"] = {"project": {"id": env["OS_PROJECT_ID"]}}
    elif env.get("OS_PROJECT_NAME"):
        domain = {"name": env.get("OS_PROJECT_DOMAIN_NAME", "Default")}
        auth["scope"] = {"project": {"name": env["OS_PROJECT_NAME"], "domain": domain}}
    return auth


def tokens_url(auth_url: str) -> str:
    base = auth_url.rstrip("/")
    return (base if base.endswith("/v3") else base + "/v3") + "/auth/tokens"


def login(env: Mapping[str, str], timeout: float) -> str | None:
    """A new token for the credentials in `env`, or None when it holds none; `LoginFailed`
    when Keystone refuses them or cannot be asked."""
    auth = credentials(env)
    if auth is None:
        return None
    url = tokens_url(env["OS_AUTH_URL"])
    request = urllib.request.Request(
        url,
        data=json.dumps({"auth": auth}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            token = response.headers.get("X-Subject-Token")
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code >= 500:
            raise LoginFailed(f"Keystone at {url} answered {exc.code}", False, exc.code) from None
        raise LoginFailed(
            f"Keystone at {url} refused the OS_* credentials ({exc.code})", True, exc.code
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LoginFailed(f"cannot reach Keystone at {url}: {reason}", False) from None
    if not token:
        raise LoginFailed(f"Keystone at {url} answered without a token", True)
    return str(token)
