"""Kubernetes resource quantities ("500m", "4Gi", "1e3") as exact numbers. Pure."""

from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
            "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def parse_quantity(value) -> Decimal:
    """Parse a Kubernetes quantity into a Decimal; raise ValueError naming the bad value."""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return Decimal(str(value))
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}")
    text = value.strip()
    for suffix, mult in _BINARY.items():
        if text.endswith(suffix):
            return _number(text[: -len(suffix)], value) * mult
    if len(text) > 1 and text[-1] in _DECIMAL and not text[-1].isdigit():
        return _number(text[:-1], value) * Decimal(_DECIMAL[text[-1]])
    return _number(text, value)


def _number(text, original) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(
            f"quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {original!r}"
        ) from None
    if not number.is_finite():
        raise ValueError(f"invalid quantity {original!r}")
    return number


def format_quantity(amount: Decimal, resource: str = "") -> str:
    """A canonical-looking form: cpu in cores or millicores, bytes with a binary suffix when exact."""
    amount = Decimal(amount)
    if amount == amount.to_integral_value():
        whole = int(amount)
        if resource.endswith(("memory", "storage")) or "storage" in resource:
            for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
                mult = _BINARY[suffix]
                if whole and whole % mult == 0:
                    return f"{whole // mult}{suffix}"
        return str(whole)
    milli = amount * 1000
    if milli == milli.to_integral_value():
        return f"{int(milli)}m"
    return str(amount.normalize())
