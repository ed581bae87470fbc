"""The checked text types of the settings that name a service or hold a secret.

A URL or key that is wrong fails at load time with a message naming what is wrong, and never
echoes a password or a key: `redact_url` takes the password out of every URL a message shows.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated
from urllib.parse import SplitResult, parse_qs, urlsplit

from pydantic import AfterValidator, PlainSerializer, SecretStr

_PASSWORD_PARAMETER = re.compile(r"(?i)([?&]password=)[^&]*")


def redact_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs.

    Works on the raw text, not on what `urlsplit` makes of it: the URLs that reach an error
    message are the malformed ones, and a password holding an unencoded `/`, `?` or `#` is
    exactly what `urlsplit` misreads (it ends the host part early and never finds the password).
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return "<not a URL>"
    if "@" in rest:
        userinfo, _, after = rest.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        rest = f"{user}:***@{after}" if has_password else f"{userinfo}@{after}"
    rest = _PASSWORD_PARAMETER.sub(r"\1***", rest)
    return f"{scheme}://{rest}"


def _port_of(parts: SplitResult, url: str) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise ValueError(f"malformed port in {redact_url(url)!r}") from None


def _check_postgres_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise ValueError(
            f"expected a postgresql:// URL, got scheme {parts.scheme!r} in {redact_url(url)!r}"
        )
    _port_of(parts, url)
    socket_dir = parse_qs(parts.query).get("host")
    if not parts.hostname and not socket_dir:
        raise ValueError(f"no host in {redact_url(url)!r}")
    if not parts.path.strip("/"):
        raise ValueError(f"no database name in {redact_url(url)!r}")
    return url


def _check_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ValueError(
            f"expected a redis://, rediss:// or unix:// URL, got scheme {parts.scheme!r} "
            f"in {redact_url(url)!r}"
        )
    _port_of(parts, url)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"no socket path in {redact_url(url)!r}")
        return url
    if not parts.hostname:
        raise ValueError(f"no host in {redact_url(url)!r}")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"the database in {redact_url(url)!r} must be a number")
    return url


def _check_master_key(encoded: str) -> str:
    try:
        secret = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != 32:
        # Never echo the value: it is a secret even when it is malformed.
        raise ValueError("must be 32 random bytes, base64 encoded (`aiaas keys generate`)")
    return encoded


PostgresUrl = Annotated[str, AfterValidator(_check_postgres_url)]
MasterKeyText = Annotated[str, AfterValidator(_check_master_key)]
RedisUrl = Annotated[str, AfterValidator(_check_redis_url)]


def _reveal(secret: SecretStr) -> str:
    return secret.get_secret_value()


SecretText = Annotated[SecretStr, PlainSerializer(_reveal, when_used="json")]
"""A secret that never prints: its repr and str are masked, and code reads it with
`get_secret_value()`. Only a JSON dump reveals it, which `config_environment` needs to hand the
whole configuration to a child process."""
