"""The loop thread that lets synchronous callers drive the async nats client."""

from __future__ import annotations

import asyncio
import doctest

import pytest

import derivex.cluster.loop
from derivex.cluster.loop import LoopThread


def test_docstring_example() -> None:
    result = doctest.testmod(derivex.cluster.loop)
    assert result.attempted > 0 and result.failed == 0


def test_exceptions_and_timeouts_reach_the_caller() -> None:
    loop = LoopThread("test")
    try:

        async def fail() -> None:
            raise KeyError("inside")

        with pytest.raises(KeyError, match="inside"):
            loop.call(fail())
        with pytest.raises(TimeoutError):
            loop.call(asyncio.sleep(5), timeout=0.05)
        assert loop.call(asyncio.sleep(0, result=3)) == 3  # still serving after both
    finally:
        loop.close()
    assert not loop.thread.is_alive()


def test_close_cancels_what_is_still_pending() -> None:
    loop = LoopThread("test")
    pending = asyncio.run_coroutine_threadsafe(asyncio.sleep(60), loop.loop)
    loop.close()
    assert pending.cancelled() and loop.loop.is_closed()
