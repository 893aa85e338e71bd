"""The examples in public docstrings run as tests."""

from __future__ import annotations

import doctest

import pytest

import derivex.core.codec
import derivex.core.engine
import derivex.core.query
import derivex.exchange
import derivex.gateway.auth_limits
import derivex.gateway.candles
import derivex.gateway.keys
import derivex.gateway.self_trading_api
import derivex.gateway.signatures


@pytest.mark.parametrize(
    "module",
    [
        derivex.exchange,
        derivex.core.engine,
        derivex.core.codec,
        derivex.core.query,
        derivex.gateway.auth_limits,
        derivex.gateway.candles,
        derivex.gateway.keys,
        derivex.gateway.self_trading_api,
        derivex.gateway.signatures,
    ],
)
def test_docstring_examples(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
