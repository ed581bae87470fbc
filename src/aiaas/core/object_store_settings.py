"""The settings of the `s3` artifact store, a base of `Config` (docs/configuration.md).

They live apart from config.py to keep that module readable; `Config` inherits them, so they are
plain top-level keys (`s3_bucket`, `AIAAS_S3_BUCKET`) like every other setting. The endpoint is
the operator's alone: no request ever names a host the store talks to.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo, field_validator

from aiaas.core.setting_types import SecretText, redact_url

MIN_PART_BYTES = 5 * 1024**2
"""S3 refuses a multipart part smaller than this, except the last."""


def _check_endpoint(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(
            f"expected an http:// or https:// URL with a host, got {redact_url(url)!r}"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        # Credentials belong in their own settings, where they are kept secret.
        raise ValueError("the endpoint holds no credentials, query or fragment")
    if parts.path.strip("/"):
        raise ValueError("the endpoint is scheme, host and port only; name the bucket in s3_bucket")
    return url.rstrip("/")


def _check_prefix(prefix: str) -> str:
    segments = prefix.split("/")
    if any(segment in {"", ".", ".."} for segment in segments):
        raise ValueError(
            "a path prefix of names separated by `/`, without a leading or trailing one"
        )
    return prefix


PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
"""The private address ranges (RFC 1918 and IPv6 unique local addresses), named one by one:
Python's `is_private` also counts documentation, reserved and some routed IPv6 ranges."""


def is_private_address(host: str) -> bool:
    """Whether `host` is an IP address of a private network; a name never is, since what it
    resolves to is not known when the configuration is read."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in PRIVATE_NETWORKS)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ObjectStoreSettings(BaseModel):
    """The `s3` artifact store's settings. Unused while `artifact_store` names another store."""

    s3_endpoint: Annotated[str, AfterValidator(_check_endpoint)] | None = Field(
        None,
        description="URL of the S3-compatible endpoint (scheme, host, port); unset: AWS S3 "
        "in s3_region.",
    )
    s3_bucket: str | None = Field(
        None, min_length=3, max_length=63, description="Bucket of the `s3` artifact store."
    )
    s3_region: str = Field("us-east-1", min_length=1, description="Region of the bucket.")
    s3_access_key_id: str | None = Field(None, description="Access key id of the `s3` store.")
    s3_secret_access_key: SecretText | None = Field(
        None, description="Secret access key of the `s3` store."
    )
    s3_prefix: Annotated[str, AfterValidator(_check_prefix)] | None = Field(
        None, description="Path prefix of every object in the bucket, e.g. `aiaas/prod`."
    )
    s3_allow_http_on_private_network: bool = Field(
        False,
        description="With s3_allow_http, `1` also allows a plain http:// s3_endpoint whose host "
        "is a private-network IP address (10/8, 172.16/12, 192.168/16, fc00::/7): an object "
        "store on the cluster's own network. Never a name, which could resolve anywhere.",
    )
    s3_allow_http: bool = Field(
        False,
        validate_default=True,
        description="`1` allows a plain http:// s3_endpoint, on a loopback address only (see "
        "s3_allow_http_on_private_network).",
    )
    s3_part_bytes: int = Field(
        16 * 1024**2,
        ge=MIN_PART_BYTES,
        le=5 * 1024**3,
        description="An artifact larger than this is uploaded in parts of this size (multipart); "
        "it bounds the memory of one upload to a few parts.",
    )

    @field_validator("s3_allow_http")
    @classmethod
    def _plain_http_only_on_loopback(cls, allow_http: bool, info: ValidationInfo) -> bool:
        endpoint = info.data.get("s3_endpoint")
        parts = urlsplit(endpoint or "")
        if endpoint and parts.scheme == "http" and not allow_http:
            raise ValueError("s3_endpoint is plain http: use https, or allow it for loopback")
        host = parts.hostname or ""
        if not allow_http or is_loopback(host):
            return allow_http
        if not info.data.get("s3_allow_http_on_private_network"):
            raise ValueError("plain http is for an s3_endpoint on a loopback address only")
        if not is_private_address(host):
            raise ValueError(
                "plain http is for an s3_endpoint on a loopback or private-network IP address only"
            )
        return allow_http
