"""Kubernetes resource quantities ("500m", "4Gi", "1e3", "100n"): the one parser and the one
formatter in the repository. Pure.

``parse_quantity`` reads a quantity as the API server does (apimachinery's
``resource.ParseQuantity``): an optional sign, digits with at most one ".", then one suffix, a
decimal SI one (``n u m k M G T P E``), a binary one (``Ki Mi Gi Ti Pi Ei``) or a decimal
exponent (``e3``, ``E-2``); no white space; ``K`` is not a suffix. A value finer than a
nano-unit is rounded up to one (``"1e-10"`` is ``1n``), a binary-suffixed one is capped at
2**63 - 1. Negative amounts are quantities; ``parse_cpu`` and ``parse_bytes`` refuse them,
since no size, request or volume can be negative.

``format_quantity`` writes an amount in the API server's canonical form: a binary suffix for
bytes (``memory``, ``storage``) when exact, else the decimal SI form (``500m``, ``1536``,
``2k``).
"""

from __future__ import annotations

import functools
import math
import re
from decimal import ROUND_UP, Decimal, localcontext

# apimachinery's messages (ErrFormatWrong, ErrSuffix, ErrNumeric), word for word
FORMAT_WRONG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
SUFFIX_WRONG = "unable to parse quantity's suffix"
NUMERIC_WRONG = "unable to parse numeric part of quantity"

BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_BY_EXPONENT = {e: s for s, e in DECIMAL.items()}
_BINARY_BY_POWER = {p: s for s, p in BINARY.items()}
_BYTES = ("memory", "storage")          # resource names whose amounts are bytes
_MAX_BINARY = Decimal(2**63 - 1)
_NANO = Decimal("1e-9")
# sign, digits with at most one ".", then the suffix's letters, an optional sign and digits
_SHAPE = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*)([+-]?[0-9]*)")


class QuantityError(ValueError):
    """A value that is not a quantity (``reason``: the API server's words), or one the caller
    cannot use (a negative size). The message names the value."""

    def __init__(self, value, reason: str):
        self.value, self.reason = value, reason
        super().__init__(f"not a quantity: {value!r} ({reason})")


def parse_quantity(value) -> Decimal:
    """The exact amount of a quantity (a string, or a number as YAML/JSON gives it)."""
    if type(value) in _CACHED_TYPES:  # the same few values (a catalog's sizes: "4Gi", 0.5, 2) are read at every start and poll
        return _parse_cached(value)
    return _parse(value)


_CACHED_TYPES = (str, int, float)  # exactly these (not bool, not subclasses): hashable, immutable


@functools.lru_cache(maxsize=1024, typed=True)  # typed: 1, 1.0 and "1" are separate entries
def _parse_cached(value) -> Decimal:
    return _parse(value)


def _parse(value) -> Decimal:
    text = _text(value)
    if text == "0":
        return Decimal(0)
    match = _SHAPE.fullmatch(text)
    if match is None:
        raise QuantityError(value, FORMAT_WRONG)
    sign, whole, fraction, letters, exponent_digits = match.groups()
    base, exponent, binary = _suffix(letters + exponent_digits, value)
    # no digits at all ("+", ".", "Gi") is 0 for the API server
    number = sign + (whole or "0") + "." + (fraction or "0")
    try:
        with localcontext() as ctx:
            ctx.prec = len(number) + 40
            amount = Decimal(number)
            amount = amount.scaleb(exponent) if base == 10 else amount * (2 ** exponent)
            if amount and amount.as_tuple().exponent < -9:
                amount = abs(amount).quantize(_NANO, rounding=ROUND_UP).copy_sign(amount)
    except ArithmeticError:      # an exponent beyond any resource (1e999999999)
        raise QuantityError(value, NUMERIC_WRONG) from None
    if binary and amount > _MAX_BINARY:
        amount = _MAX_BINARY
    return amount


def _text(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise QuantityError(value, FORMAT_WRONG)
    if isinstance(value, float) and not math.isfinite(value):
        raise QuantityError(value, FORMAT_WRONG)
    if isinstance(value, Decimal) and not value.is_finite():
        raise QuantityError(value, FORMAT_WRONG)
    text = value if isinstance(value, str) else str(value)
    if not text:
        raise QuantityError(value, FORMAT_WRONG)
    return text


def _suffix(suffix: str, value) -> tuple[int, int, bool]:
    """(base, exponent, binary) of a suffix, as apimachinery's suffixer interprets it."""
    if suffix in DECIMAL:
        return 10, DECIMAL[suffix], False
    if suffix in BINARY:
        return 2, BINARY[suffix], True
    if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[+-]?[0-9]+", suffix[1:]):
        exponent = int(suffix[1:])
        if abs(exponent) <= 2**31 - 1:
            return 10, exponent, False
    raise QuantityError(value, SUFFIX_WRONG)


def parse_cpu(value) -> float:
    """CPU cores as a float ("500m" -> 0.5); refuses a negative amount."""
    return float(_non_negative(value))


def parse_bytes(value) -> int:
    """Bytes as an int ("4Gi" -> 4294967296, "1G" -> 10**9), rounded up to a whole byte as the
    API server's ``Quantity.Value()`` does ("100n" -> 1); refuses a negative amount."""
    return int(_non_negative(value).to_integral_value(rounding=ROUND_UP))


def _non_negative(value) -> Decimal:
    amount = parse_quantity(value)
    if amount < 0:
        raise QuantityError(value, "must be greater than or equal to 0")
    return amount


def is_bytes(resource: str) -> bool:
    """True for resources counted in bytes (``memory``, ``requests.storage``, ...)."""
    return resource.endswith(_BYTES) or "storage" in resource


def format_quantity(amount, resource: str = "") -> str:
    """``amount`` (a number or a quantity) in canonical form: the decimal SI form (``500m``,
    ``2``, ``1G``, ``1500``), or for a byte ``resource`` the largest binary suffix that divides
    it (``4Gi``, ``1536Mi``) where that is no longer (``1T`` stays ``1T``)."""
    amount = parse_quantity(amount)
    if amount == 0:
        return "0"
    decimal = _decimal_si(amount)
    if is_bytes(resource) and amount == amount.to_integral_value() and abs(amount) >= 1024:
        whole = int(amount)
        power = max(p for p in BINARY.values() if whole % 2**p == 0) if whole % 1024 == 0 else 0
        if power:
            binary = f"{whole // 2**power}{_BINARY_BY_POWER[power]}"
            if len(binary) <= len(decimal):      # 4Gi, 1536Mi; but 1T, not 976562500Ki
                return binary
    return decimal


def _decimal_si(amount: Decimal) -> str:
    for exponent in sorted(_DECIMAL_BY_EXPONENT, reverse=True):
        mantissa = amount.scaleb(-exponent)
        if mantissa == mantissa.to_integral_value():
            return f"{int(mantissa)}{_DECIMAL_BY_EXPONENT[exponent]}"
    # finer than a nano-unit cannot be stored; round up as the parser does
    return f"{int(amount.scaleb(9).to_integral_value(rounding=ROUND_UP))}n"


def human_quantity(value, resource: str) -> str:
    """An amount of ``resource`` as people read it, the one way ptjaas shows one (the form, the
    usage page, quota messages): bytes in canonical form (``4Gi``, ``1536Mi``), CPU cores to the
    millicore (``0.5``, ``2``), anything else (GPUs, servers) as a whole number."""
    if is_bytes(resource):
        return format_quantity(parse_bytes(value), resource)
    if resource == "cpu":
        return f"{round(parse_cpu(value), 3):g}"
    return str(int(value))


def canonical(value, resource: str = "") -> str:
    """A quantity as text in canonical form ("4096Mi" -> "4Gi", 0.5 -> "500m")."""
    return format_quantity(parse_quantity(value), resource)


__all__ = ["QuantityError", "parse_quantity", "parse_cpu", "parse_bytes", "format_quantity",
           "canonical", "is_bytes", "human_quantity"]
