"""The s3 artifact store's own behaviour against a real S3 gateway (SeaweedFS): multipart above
a part's size, integrity of large objects, credentials refused clearly, leftovers of crashed
uploads, and the settings that keep the endpoint the operator's. The contract it shares with the
filesystem store is tested in test_artifact_store_contract.py."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import obstore
import pytest

from aiaas.core.config import build_config, config_environment, load_config
from aiaas.core.errors import ArtifactError, ArtifactIntegrityError, ConfigError
from aiaas.plugins.s3_artifacts import OBJECTS, STAGING, S3ArtifactStore
from artifact_streams import chunks_of, stored_keys
from object_store import ObjectStoreServer

PART = 5 * 1024**2


@pytest.fixture
def prefix() -> str:
    return f"s3-tests/{uuid.uuid4().hex}"


@pytest.fixture
def store(object_store: ObjectStoreServer, prefix: str) -> S3ArtifactStore:
    return S3ArtifactStore(build_config(object_store.settings(prefix, s3_part_bytes=PART)))


async def etag_of(object_store: ObjectStoreServer, prefix: str, key: str) -> str:
    meta = await obstore.head_async(object_store.raw(prefix), OBJECTS + key)
    return str(meta["e_tag"])


async def test_an_artifact_larger_than_a_part_is_uploaded_in_parts(
    store: S3ArtifactStore, object_store: ObjectStoreServer, prefix: str
) -> None:
    data = os.urandom(2 * PART + 1234)

    large = await store.put_stream(
        chunks_of(*(data[i : i + 65536] for i in range(0, len(data), 65536)))
    )
    small = await store.put_bytes(data[:PART])

    # S3 names a multipart object's ETag after its parts: "<md5 of the parts' md5s>-<count>".
    assert (await etag_of(object_store, prefix, large.key)).strip('"').endswith("-3")
    assert "-" not in await etag_of(object_store, prefix, small.key)
    assert large.size_bytes == len(data)
    assert await store.read_bytes(large.key) == data
    assert await store.read_bytes(small.key) == data[:PART]


async def read_into(store: S3ArtifactStore, key: str, received: bytearray) -> None:
    async for chunk in store.open(key):
        received += chunk


async def test_altered_bytes_of_a_large_object_fail_at_the_end_of_the_stream(
    store: S3ArtifactStore, object_store: ObjectStoreServer, prefix: str
) -> None:
    data = os.urandom(PART + 4321)
    stored = await store.put_bytes(data)
    altered = bytearray(data)
    altered[PART] ^= 0xFF
    await obstore.put_async(object_store.raw(prefix), OBJECTS + stored.key, bytes(altered))

    received = bytearray()
    with pytest.raises(ArtifactIntegrityError, match=stored.key):
        await read_into(store, stored.key, received)

    # Every byte was streamed before the verdict: integrity costs no second read.
    assert bytes(received) == bytes(altered)


async def test_a_wrong_secret_is_refused_with_a_clear_error_that_keeps_it_secret(
    object_store: ObjectStoreServer, prefix: str
) -> None:
    wrong_secret = f"not-the-secret-{uuid.uuid4().hex}"
    config = build_config({**object_store.settings(prefix), "s3_secret_access_key": wrong_secret})
    store = S3ArtifactStore(config)
    existing = hashlib.sha256(b"anything").hexdigest()

    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: store.put_bytes(b"refused"),
        lambda: store.put_bytes(os.urandom(config.s3_part_bytes + 1)),
        lambda: store.read_bytes(existing),
        lambda: store.exists(existing),
        lambda: stored_keys(store),
    ]
    for attempt in attempts:
        with pytest.raises(ArtifactError, match="refused the s3 artifact store's") as raised:
            await attempt()
        assert wrong_secret not in str(raised.value)
        assert object_store.secret_access_key not in str(raised.value)
    assert wrong_secret not in repr(config)


async def test_keys_lists_only_artifacts_among_foreign_objects(
    store: S3ArtifactStore, object_store: ObjectStoreServer, prefix: str
) -> None:
    raw = object_store.raw(prefix)
    await obstore.put_async(raw, OBJECTS + "README", b"not an artifact")
    await obstore.put_async(raw, "elsewhere/" + "0" * 64, b"outside the objects")
    stored = await store.put_bytes(b"an artifact")

    assert await stored_keys(store) == [stored.key]


async def test_stale_staging_objects_are_discarded_and_fresh_ones_kept(
    store: S3ArtifactStore, object_store: ObjectStoreServer, prefix: str
) -> None:
    raw = object_store.raw(prefix)
    await obstore.put_async(raw, STAGING + "left-by-a-crash", b"half an upload")
    kept = await store.put_bytes(b"kept")

    assert await store.discard_incomplete(older_than_s=3600) == 0
    assert await store.discard_incomplete(older_than_s=0) == 1

    remaining = [meta["path"] async for batch in obstore.list(raw, STAGING) for meta in batch]
    assert remaining == []
    assert await store.read_bytes(kept.key) == b"kept"


async def test_prefixes_keep_two_stores_in_one_bucket_apart(
    object_store: ObjectStoreServer,
) -> None:
    first = S3ArtifactStore(build_config(object_store.settings(f"apart/{uuid.uuid4().hex}")))
    second = S3ArtifactStore(build_config(object_store.settings(f"apart/{uuid.uuid4().hex}")))

    stored = await first.put_bytes(b"only in the first")

    assert await second.exists(stored.key) is False
    assert await stored_keys(second) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"s3_bucket": None}, "needs s3_bucket"),
        ({"s3_secret_access_key": None}, "both s3_access_key_id and s3_secret_access_key"),
    ],
)
def test_an_incomplete_configuration_stops_the_store_from_being_built(
    object_store: ObjectStoreServer, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        S3ArtifactStore(build_config({**object_store.settings(), **settings}))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"s3_endpoint": "http://10.1.2.3:8333", "s3_allow_http": True}, "loopback"),
        (
            {
                "s3_endpoint": "http://8.8.8.8:8333",
                "s3_allow_http": True,
                "s3_allow_http_on_private_network": True,
            },
            "private-network IP address",
        ),
        *(
            (
                {
                    "s3_endpoint": f"http://{host}:8333",
                    "s3_allow_http": True,
                    "s3_allow_http_on_private_network": True,
                },
                "private-network IP address",
            )
            # Documentation, reserved and Teredo addresses: `is_private` in Python, not private
            # networks.
            for host in ("192.0.2.10", "240.0.0.1", "[2001:0:5ef5:79fd::1]")
        ),
        (
            {
                "s3_endpoint": "http://storage.internal:8333",
                "s3_allow_http": True,
                "s3_allow_http_on_private_network": True,
            },
            "private-network IP address",
        ),
        (
            {"s3_endpoint": "http://10.1.2.3:8333", "s3_allow_http_on_private_network": True},
            "plain http",
        ),
        ({"s3_endpoint": "http://storage.example:8333"}, "plain http"),
        ({"s3_endpoint": "https://key:secret@storage.example"}, "no credentials"),
        ({"s3_endpoint": "https://storage.example/bucket"}, "s3_bucket"),
        ({"s3_endpoint": "file:///var/data"}, "http:// or https://"),
        ({"s3_prefix": "/absolute"}, "path prefix"),
        ({"s3_prefix": "a/../b"}, "path prefix"),
        ({"s3_part_bytes": 1024}, "s3_part_bytes"),
    ],
)
def test_settings_that_would_reach_an_unexpected_place_are_refused(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        build_config({"artifact_store": "s3", "s3_bucket": "bucket", **settings})
    assert "secret@" not in str(raised.value)


def test_the_secret_never_prints_yet_reaches_a_child_process() -> None:
    config = build_config({"s3_access_key_id": "id", "s3_secret_access_key": "hunter2-secret"})

    assert "hunter2-secret" not in repr(config)
    assert "hunter2-secret" not in str(config)
    # `aiaas dev` hands its children the whole configuration through the environment.
    rebuilt = load_config(config_environment(config))
    assert rebuilt.s3_secret_access_key is not None
    assert rebuilt.s3_secret_access_key.get_secret_value() == "hunter2-secret"


def test_https_and_loopback_http_endpoints_are_taken() -> None:
    secure = build_config({"s3_endpoint": "https://s3.eu-west-1.amazonaws.com/"})
    local = build_config({"s3_endpoint": "http://[::1]:8333", "s3_allow_http": True})

    assert secure.s3_endpoint == "https://s3.eu-west-1.amazonaws.com"
    assert local.s3_endpoint == "http://[::1]:8333"


def test_plain_http_on_a_private_network_address_is_taken_only_when_allowed_explicitly() -> None:
    allowed = {"s3_allow_http": True, "s3_allow_http_on_private_network": True}

    for endpoint in ("http://10.231.4.10:8333", "http://192.168.1.2:9000", "http://[fd00::7]:80"):
        assert build_config({"s3_endpoint": endpoint, **allowed}).s3_endpoint == endpoint
    with pytest.raises(ConfigError, match="loopback address only"):
        build_config({"s3_endpoint": "http://10.231.4.10:8333", "s3_allow_http": True})
