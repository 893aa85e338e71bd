"""Request parameters: REST query strings carry every value as a string (``amount=0.1``,
``post_only=true``), JSON-RPC bodies carry JSON types. These readers accept both and raise
JSON-RPC ``Invalid params`` (-32602) naming the parameter otherwise.

>>> integer({"count": "20"}, "count"), boolean({"post_only": "true"}, "post_only")
(20, True)
>>> text({"currency": 5}, "currency")
Traceback (most recent call last):
...
derivex.gateway.errors.RpcError: -32602 Invalid params
"""

from __future__ import annotations

from typing import Any

from derivex.gateway.errors import MISSING_PARAMS, ORDER_NOT_FOUND, RpcError, invalid_params
from derivex.gateway.numbers import MAX_NUMBER_CHARS, whole_integer

_MISSING = object()
MAX_TEXT = 256


def _get(params: dict[str, Any], name: str, default: Any) -> Any:
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise RpcError(MISSING_PARAMS, "Missing params", {"param": name})
        return default
    return value


def text(params: dict[str, Any], name: str, default: Any = _MISSING) -> Any:
    value = _get(params, name, default)
    if value is default:
        return value
    if not isinstance(value, str):
        raise invalid_params(name, "must be a string")
    if len(value) > MAX_TEXT:
        raise invalid_params(name, "too long")
    return value


def integer(
    params: dict[str, Any],
    name: str,
    default: Any = _MISSING,
    *,
    low: int | None = None,
    high: int | None = None,
) -> Any:
    """An integer (``numbers.whole_integer``: ASCII digits with an optional sign, or a JSON
    integer / integral float) within ``[low, high]``; -32602 otherwise."""
    value = _get(params, name, default)
    if value is default:
        return value
    value = whole_integer(value, name)
    if low is not None and value < low:
        raise invalid_params(name, f"must be at least {low}")
    if high is not None and value > high:
        raise invalid_params(name, f"must be at most {high}")
    return value


def clamped(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """An integer limited to ``[low, high]`` (counts and depths: clients ask for anything)."""
    value = integer(params, name, default)
    return max(low, min(high, value))


def boolean(params: dict[str, Any], name: str, default: Any = _MISSING) -> Any:
    value = _get(params, name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid_params(name, "must be true or false")


def number(params: dict[str, Any], name: str, default: Any = _MISSING) -> Any:
    """A decimal number as sent (string, int or float), for exact conversion later
    (``InstrumentSpec.to_lots`` / ``to_ticks``, which apply the grammar of ``numbers``).
    Only the type and length are checked here: -32602 otherwise."""
    value = _get(params, name, default)
    if value is default:
        return value
    kind = type(value)
    if kind is not str and kind is not int and kind is not float:
        raise invalid_params(name, "must be a number")
    if kind is str and len(value) > MAX_NUMBER_CHARS:
        raise invalid_params(name, f"longer than {MAX_NUMBER_CHARS} characters")
    return value


def choice(
    params: dict[str, Any], name: str, choices: tuple[str, ...], default: Any = _MISSING
) -> Any:
    value = text(params, name, default)
    if value is not default and value not in choices:
        raise invalid_params(name, f"must be one of {', '.join(choices)}")
    return value


def order_id(params: dict[str, Any], name: str = "order_id") -> int:
    """Order ids are decimal strings; anything else cannot name an order (10004)."""
    value = _get(params, name, _MISSING)
    if isinstance(value, bool):
        raise invalid_params(name, "must be an order id")
    if isinstance(value, int):
        result = value
    elif (
        isinstance(value, str) and len(value) < 20 and value.isascii() and value.isdecimal()
    ):  # ASCII: "١٢" is decimal to Python, not to us
        result = int(value)
    else:
        raise RpcError(ORDER_NOT_FOUND, "order_not_found", {"param": name})
    if not 0 < result < 2**63:
        raise RpcError(ORDER_NOT_FOUND, "order_not_found", {"param": name})
    return result


def string_list(params: dict[str, Any], name: str) -> list[str]:
    value = _get(params, name, _MISSING)
    if isinstance(value, str):  # REST: comma separated
        value = [part for part in value.split(",") if part]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_params(name, "must be a list of strings")
    if len(value) > 1000:
        raise invalid_params(name, "too many entries")
    return value
