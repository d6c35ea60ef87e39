"""Keeping the Redis password out of everything snap prints.

A URL is masked by its structure, never by searching for the password's text: whatever the
password holds (an unencoded @, :, /, ?, # or &), all between the user name and the last @
is masked, and so is the value of every query parameter whose name ends in "password", in
any letter case. Other text (redis-py's messages, a --verbose traceback) is masked where a
password can stand whole: in a URL, quoted, as :PASSWORD@ or as password=VALUE; a short
password is never searched for inside ordinary words.
"""

from __future__ import annotations

import logging
import re
import traceback
from urllib.parse import unquote, unquote_plus, urlsplit

MASK = "****"
# A value runs to the next parameter: an & followed by a name and "=". An & followed by no
# name=value is taken as part of the password (redis-py would cut the password there).
QUERY_PASSWORD = re.compile(r"(password=)([^&]*(?:&[^&=]*(?=&|$))*)", re.IGNORECASE)
TEXT_PASSWORD = re.compile(r"(password=)([^&\s'\"]*)", re.IGNORECASE)
URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def secret_spans(rest: str) -> list[tuple[int, int]]:
    """Where the passwords are in a URL without its scheme://, merged and in order."""
    spans = [match.span(2) for match in QUERY_PASSWORD.finditer(rest)]
    at = rest.rfind("@")
    host_start = rest.find("]") + 1 if rest.startswith("[") else 0  # past an IPv6 address
    colon = rest.find(":", host_start, at) if at >= 0 else -1
    if colon >= 0:  # an @ inside a query password: the spans overlap, and merge
        spans.append((colon + 1, at))
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(stop, merged[-1][1]))
        else:
            merged.append((start, stop))
    return merged


def split_scheme(url: str) -> tuple[str, str]:
    head, separator, rest = url.partition("://")
    return (head + separator, rest) if separator else ("", url)


def mask_url(url: str) -> str:
    """The URL with every password in it replaced by ****."""
    head, rest = split_scheme(url)
    shown, position = [head], 0
    for start, stop in secret_spans(rest):
        shown += [rest[position:start], MASK]
        position = stop
    shown.append(rest[position:])
    return "".join(shown)


def password_misplaced(url: str) -> bool:
    """A # anywhere, or an @ after the host: a password holding an unencoded /, ? or #, which
    urlsplit and redis-py cut apart, taking part of it for the host, the port or the path."""
    if "#" in url:
        return True
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return True
    rest = split_scheme(url)[1]
    tail = rest[len(netloc) :] if rest.startswith(netloc) else rest
    return "@" in QUERY_PASSWORD.sub("", tail)


def url_passwords(url: str | None) -> set[str]:
    """Every text that some reading of the URL takes for a password, as written and decoded,
    and as Python's repr() shows it."""
    if not url:
        return set()
    rest = split_scheme(url)[1]
    found = {rest[start:stop] for start, stop in secret_spans(rest)}
    found |= {match.group(2) for match in QUERY_PASSWORD.finditer(rest)}
    if password_misplaced(url):  # the pieces urlsplit and redis-py take for host and port
        try:
            found |= set(re.split("[:@]", urlsplit(url).netloc))
        except ValueError:
            pass
    found |= {decode(text) for text in found for decode in (unquote, unquote_plus)}
    found |= {repr(text)[1:-1] for text in found}
    return {text for text in found if text and text != MASK}


def mask_text(text: str, url: str | None) -> str:
    """The text with the password of `url` masked wherever it stands whole."""
    if url:
        text = text.replace(url, mask_url(url))
    text = URL_IN_TEXT.sub(lambda match: mask_url(match.group()), text)
    text = TEXT_PASSWORD.sub(rf"\g<1>{MASK}", text)
    for secret in sorted(url_passwords(url), key=len, reverse=True):
        escaped = re.escape(secret)
        text = re.sub(rf"(['\"]){escaped}\1", rf"\g<1>{MASK}\g<1>", text)
        text = re.sub(rf":{escaped}@", f":{MASK}@", text)
    return text


class MaskingFilter(logging.Filter):
    """Keeps the Redis password out of every line and traceback, whatever produced it."""

    def __init__(self, url: str | None):
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage(), self.url)
        record.args = None
        if record.exc_info:
            formatted = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = mask_text(formatted.rstrip("\n"), self.url)
        return True
