"""Numbers a client sends, read in bounded time: the one grammar every price, amount and
integer parameter goes through.

A number is a JSON number, or a string of plain ASCII: an optional sign, digits with an
optional fraction, and an optional exponent (``[+-]?(D+(.D*)?|.D+)([eE][+-]?D+)?``, ``D``
being ``0-9`` only), at most ``MAX_NUMBER_CHARS`` characters, the exponent at most
``MAX_EXPONENT`` in magnitude. Nothing else is a number: no ``_`` separators, no other
digits (Arabic-Indic, full-width), no surrounding spaces, no ``NaN``/``inf``. Conversion to
engine units is exact integer arithmetic on at most ~64-digit values, so reading any
number costs O(its length) with small constants, whatever it says (``"1e999995"`` is
refused by the exponent check before any arithmetic; a ``Decimal`` path took 48 s on it).

Errors are ``RpcError``: -32602 ``Invalid params`` naming the parameter for anything
outside the grammar or outside int64 once converted; the caller's code (e.g. 10021
``invalid_amount``) for a value that is not a whole number of units.

>>> units("60000.5", 1, 100, "price")
6000050
>>> units(1e-4, 1, 10_000, "amount"), units("+2.5E3", 1, 1, "x"), units(-7, 1, 1, "x")
(1, 2500, -7)
>>> units("1e999995", 1, 1, "amount")
Traceback (most recent call last):
...
derivex.gateway.errors.RpcError: -32602 Invalid params
>>> whole_integer("1_0", "count")
Traceback (most recent call last):
...
derivex.gateway.errors.RpcError: -32602 Invalid params
"""

from __future__ import annotations

import math
import re
from typing import Any

from derivex.gateway.errors import RpcError, invalid_params

MAX_NUMBER_CHARS = 64
MAX_EXPONENT = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# a JSON integer beyond this is out of every range; checked before ``str`` (whose cost
# grows with the digits)
_INT_LIMIT = 10**MAX_NUMBER_CHARS

# explicit ``[0-9]`` (``\d`` would take any Unicode digit); ``fullmatch``: no spaces. The
# pattern has no nested repetition, so matching is linear in the (bounded) length.
_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?", re.ASCII)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _refuse(param: str, reason: str) -> RpcError:
    return invalid_params(param, reason)


def _text(value: Any, param: str) -> str:
    """The text of a JSON number or a number string, checked for type, finiteness and
    length (not yet for the grammar)."""
    kind = type(value)
    if kind is str:
        text = value
    elif kind is int:
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise _refuse(param, "out of range")
        text = str(value)
    elif kind is float:
        if not math.isfinite(value):
            raise _refuse(param, "must be a finite number")
        text = repr(value)  # the shortest text that reads back as this float
    else:  # bool, None, lists, objects and subclasses
        raise _refuse(param, "must be a number")
    if len(text) > MAX_NUMBER_CHARS:
        raise _refuse(param, f"longer than {MAX_NUMBER_CHARS} characters")
    return text


def units(
    value: Any,
    numerator: int,
    denominator: int,
    param: str,
    inexact: int = -32602,
    inexact_message: str = "Invalid params",
) -> int:
    """``value / (numerator / denominator)`` as an int64: the count of units of size
    ``numerator/denominator`` (e.g. 1/100 for a price unit of 0.01) that ``value`` is.
    Raises ``RpcError`` -32602 outside the grammar or int64, ``inexact`` (with
    ``inexact_message``) if ``value`` is not a whole number of units. Cost: O(len(value))."""
    text = _text(value, param)
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise _refuse(param, "not a plain decimal number")
    sign, whole, fraction, exponent = match.groups()
    fraction = fraction or ""
    if not whole and not fraction:
        raise _refuse(param, "not a plain decimal number")
    power = 0
    if exponent is not None:
        power = int(exponent)  # at most MAX_NUMBER_CHARS digits: cheap
        if not -MAX_EXPONENT <= power <= MAX_EXPONENT:
            raise _refuse(param, f"exponent beyond +-{MAX_EXPONENT}")
    mantissa = int(whole + fraction)  # at most MAX_NUMBER_CHARS digits
    power -= len(fraction)  # value = mantissa * 10**power, |power| <= 128
    if power >= 0:
        top, bottom = mantissa * 10**power * denominator, numerator
    else:
        top, bottom = mantissa * denominator, numerator * 10**-power
    count, rest = divmod(top, bottom)
    if rest:
        raise RpcError(inexact, inexact_message, {"param": param})
    if sign == "-":
        count = -count
    if not INT64_MIN <= count <= INT64_MAX:
        raise _refuse(param, "out of range")
    return count


def whole_integer(value: Any, param: str) -> int:
    """An integer parameter: a JSON integer, an integral JSON float, or a string of ASCII
    digits with an optional sign (``count=20`` in a query string); at most
    ``MAX_NUMBER_CHARS`` characters. Raises -32602 otherwise. Cost: O(len(value))."""
    kind = type(value)
    if kind is float:
        if not value.is_integer():  # also NaN and the infinities
            raise _refuse(param, "must be an integer")
        value = _text(value, param)
        return units(value, 1, 1, param, -32602, "Invalid params")
    text = _text(value, param)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if _INTEGER.fullmatch(text) is None:
        raise _refuse(param, "must be an integer")
    return int(text)
