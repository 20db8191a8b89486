"""What Zaqar sends a subscriber: a webhook's request body and headers, and a `mailto:`
subscriber's email, for one notification (`node.storage.outbox.notices` makes those of a post).

Zaqar 23 (`zaqar/notification/tasks/webhook.py`, `tasks/mailto.py`) sends one webhook POST, or
one email, per posted message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from email.mime.text import MIMEText
from typing import Any
from urllib.parse import parse_qs, urlsplit

MESSAGE_PLACEHOLDER = '"$zaqar_message$"'  # in a subscription's `post_data`


def webhook_request(
    notice: Mapping[str, Any], options: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    """The body and headers of the POST that carries `notice`: the notice as JSON, or the
    subscription's `post_data` with its placeholder replaced by it; `post_headers` on top of
    the JSON content type."""
    headers = {"Content-Type": "application/json"}
    extra = options.get("post_headers")
    if isinstance(extra, Mapping):
        headers.update({str(k): str(v) for k, v in extra.items()})
    data = json.dumps(notice)
    template = options.get("post_data")
    if isinstance(template, str):
        data = template.replace(MESSAGE_PLACEHOLDER, data)
    elif template is not None:  # Zaqar's validation allows an object; its text is the template
        data = json.dumps(template).replace(MESSAGE_PLACEHOLDER, data)
    return data, headers


def mail(
    notice: Mapping[str, Any], subscriber: str, options: Mapping[str, Any], sender: str
) -> MIMEText:
    """The email for `notice` to a `mailto:` subscriber: the notice as JSON text; `From` the
    subscription's `from` option (else the node's sender); `Subject` the URI's `subject`
    parameter, else the `subject` option."""
    uri = urlsplit(subscriber)
    params = {k.lower(): v for k, v in parse_qs(uri.query).items()}
    message = MIMEText(json.dumps(notice))
    message["To"] = uri.path
    message["From"] = str(options.get("from") or sender)
    subject = params.get("subject", [str(options.get("subject", ""))])
    message["Subject"] = subject[0]
    return message


def recipient(subscriber: str) -> str:
    """The address a `mailto:` URI names."""
    return urlsplit(subscriber).path
