"""Work that stops when its caller goes away.

A server keeps running a request's handler after the client has disconnected, unless the
handler asks. For a long upload that would read, store and record a version nobody waits for, so
the slow part runs here: once the request's body is read, the connection is watched, and a
disconnect cancels the work (which undoes itself: see `aiaas.core.data.datasets`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.types import Receive

from aiaas.core.errors import ClientGoneError

T = TypeVar("T")


async def _disconnected(receive: Receive) -> None:
    # Called only once the body has been read: the next message the server has for the app is
    # the disconnect, which uvicorn delivers as soon as the connection drops.
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result; `ClientGoneError` once the work is cancelled because the client went
    away first. `receive` must have delivered the whole body already."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        # Cancelled from outside: the work is cancelled too, and has undone itself before the
        # caller's own clean-up (its scratch directory) runs.
        task.cancel()
        await asyncio.wait({task})
        raise
    finally:
        watch.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientGoneError("the client disconnected; the request was stopped and undone")
