"""snapcam.masking in-process: the Redis password is masked whatever it holds, and masking
mangles no other text."""

from __future__ import annotations

import logging
import string

from hypothesis import assume, example, given
from hypothesis import strategies as st

from snapcam.masking import MaskingFilter, mask_text, mask_url

# Anything a password may hold, the URL's own delimiters first.
PASSWORD_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from("@:/?#&=%+ '\"\\"), st.characters(codec="utf-8")),
    min_size=1,
    max_size=30,
)


NAMES = st.text(alphabet=string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=10)


HOSTS = st.sampled_from(["127.0.0.1", "redis.local", "[::1]", "r-1.example.org"])


PORTS = st.integers(min_value=1, max_value=65535)


SCHEMES = st.sampled_from(["redis", "rediss", "unix"])


def any_case(word: str):
    return st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in word)).map("".join)


@given(SCHEMES, NAMES, PASSWORD_TEXT, HOSTS, PORTS, st.integers(0, 15))
@example("redis", "user", "pa#ss", "127.0.0.1", 6379, 0)
@example("redis", "user", "p/ss?x@y", "127.0.0.1", 6379, 0)
@example("redis", "user", "x?password=y", "127.0.0.1", 6379, 0)
def test_password_in_the_user_part_is_masked_whatever_it_holds(
    scheme, user, password, host, port, db
):
    url = f"{scheme}://{user}:{password}@{host}:{port}/{db}"

    # All between the user name and the last @; past it when an @ falls in a query password.
    assert mask_url(url) in (
        f"{scheme}://{user}:****@{host}:{port}/{db}",
        f"{scheme}://{user}:****",
    )


@given(any_case("password"), PASSWORD_TEXT, HOSTS, st.booleans())
@example("PASSWORD", "abc", "127.0.0.1", True)
@example("password", "a@b", "127.0.0.1", False)
def test_password_in_the_query_is_masked_in_any_letter_case(name, password, host, more):
    assume("&" not in password)  # an & followed by name=value starts the next parameter
    tail = "&db=2" if more else ""

    masked = mask_url(f"redis://{host}:6379/0?{name}={password}{tail}")

    assert masked in (f"redis://{host}:6379/0?{name}=****{tail}", f"redis://{host}:****{tail}")


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="'\"@=:")), PASSWORD_TEXT)
@example("stored image:1700000000 (41 kB, lux 400, expires in 60 s) in 0.4 s", "e")
@example("run timed out after 3 s while capturing", "s")
def test_masking_leaves_a_line_without_the_password_in_place_unchanged(line, password):
    assume("://" not in line)

    assert mask_text(line, f"redis://user:{password}@127.0.0.1:6379/0") == line


@given(PASSWORD_TEXT)
@example("pa")
def test_a_quoted_password_in_a_message_is_masked(password):
    line = f"Port could not be cast to integer value as {password!r}"

    masked = mask_text(line, f"redis://:{password}@127.0.0.1:6379")

    assert masked in (
        "Port could not be cast to integer value as '****'",
        'Port could not be cast to integer value as "****"',
    )


def test_url_pieces_redis_py_takes_for_the_port_are_masked_when_quoted():
    url = "redis://:pa#ss@127.0.0.1:6379"

    assert mask_text("... as 'pa'", url) == "... as '****'"


def test_traceback_in_a_log_record_is_masked():
    url = "redis://:hunter2@127.0.0.1:6379"
    try:
        raise ValueError(f"cannot use {url} with 'hunter2'")
    except ValueError as error:
        record = logging.LogRecord("snap", logging.ERROR, "", 0, "%s", (error,), True)
        record.exc_info = (type(error), error, error.__traceback__)

    MaskingFilter(url).filter(record)

    assert "hunter2" not in record.getMessage() + record.exc_text
    assert "redis://:****@127.0.0.1:6379" in record.exc_text
