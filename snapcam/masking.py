"""Keeping the Redis password out of everything snap prints."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def mask_url(url: str) -> str:
    """The URL with any password replaced by ****."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:****@{host}"
        query = [
            (name, "****" if name == "password" else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*/")))
    except ValueError:
        return "<unparsable URL>"


def url_password(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        query_password = dict(parse_qsl(parts.query)).get("password")
        return parts.password or query_password
    except ValueError:
        return None


class MaskingFilter(logging.Filter):
    """Keeps the Redis password out of every line, whatever produced it."""

    def __init__(self, secret: str | None):
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret:
            record.msg = record.getMessage().replace(self.secret, "****")
            record.args = None
        return True
