"""Kubernetes quantities: parsed as the API server parses them, written in canonical form."""

from decimal import Decimal

import pytest

from ptjaas_spawner.quantity import (FORMAT_WRONG, SUFFIX_WRONG, QuantityError, canonical,
                                     format_quantity, parse_bytes, parse_cpu, parse_quantity)


@pytest.mark.parametrize("text, amount", [
    ("0", 0), ("1", 1), ("500m", Decimal("0.5")), ("100n", Decimal("1e-7")), ("5u", Decimal("5e-6")),
    ("1.5Gi", 3 * 2**29), ("4Gi", 4 * 2**30), ("1Ki", 1024), ("1Ei", 2**60),
    ("1k", 1000), ("10G", 10**10), ("1E", 10**18), ("2P", 2 * 10**15),
    ("1e3", 1000), ("1E3", 1000), ("1.5e-3", Decimal("0.0015")), ("2e+2", 200),
    ("-1", -1), ("+2", 2), ("-500m", Decimal("-0.5")), ("1.", 1), (".5", Decimal("0.5")),
    ("007", 7), ("+", 0), ("-", 0), (".", 0), ("Gi", 0),     # what the API server also accepts
    ("1e-10", Decimal("1e-9")), ("-1e-10", Decimal("-1e-9")),  # rounded up to 1n, away from zero
    ("16Ei", 2**63 - 1),                                        # binary quantities are capped
    (2, 2), (0.25, Decimal("0.25")), (4294967296, 2**32),    # numbers, as YAML gives them
])
def test_parses_as_the_api_server_does(text, amount):
    assert parse_quantity(text) == amount


@pytest.mark.parametrize("text, reason", [
    ("", FORMAT_WRONG), ("lots", FORMAT_WRONG), ("1 Gi", FORMAT_WRONG), (" 1", FORMAT_WRONG),
    ("1.5.5", FORMAT_WRONG), ("1Gi ", FORMAT_WRONG), ("0x10", FORMAT_WRONG), ("1_000", FORMAT_WRONG),
    ("1K", SUFFIX_WRONG), ("1ki", SUFFIX_WRONG), ("1mi", SUFFIX_WRONG), ("1e", SUFFIX_WRONG),
    ("1Gi3", SUFFIX_WRONG), ("5-3", SUFFIX_WRONG), ("1GG", SUFFIX_WRONG), ("1iB", FORMAT_WRONG),
    (True, FORMAT_WRONG), (None, FORMAT_WRONG), (float("inf"), FORMAT_WRONG), ([1], FORMAT_WRONG),
])
def test_refuses_what_the_api_server_refuses_naming_the_value(text, reason):
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert info.value.reason == reason and repr(text) in str(info.value)


@pytest.mark.parametrize("parse, text, amount", [
    (parse_bytes, "1.5Gi", 3 * 2**29), (parse_bytes, "1G", 10**9), (parse_bytes, "100n", 1),
    (parse_bytes, "1.5", 2), (parse_bytes, 0, 0),             # whole bytes, rounded up like Value()
    (parse_cpu, "250m", 0.25), (parse_cpu, "1e3", 1000.0), (parse_cpu, "100n", 1e-7),
])
def test_cpu_and_bytes(parse, text, amount):
    assert parse(text) == amount


@pytest.mark.parametrize("parse", [parse_bytes, parse_cpu])
@pytest.mark.parametrize("text", ["-1", "-1Gi", "-500m", -2])
def test_a_size_can_not_be_negative(parse, text):
    with pytest.raises(QuantityError, match="greater than or equal to 0"):
        parse(text)


@pytest.mark.parametrize("amount, resource, text", [
    (0, "memory", "0"), (4 * 2**30, "memory", "4Gi"), (3 * 2**29, "memory", "1536Mi"),
    (10**9, "memory", "1G"), (10**12, "memory", "1T"), (1025, "memory", "1025"), (1024, "memory", "1Ki"),
    (2**30, "requests.storage", "1Gi"), (-(2**30), "memory", "-1Gi"), (512, "memory", "512"),
    (Decimal("0.5"), "cpu", "500m"), (2, "cpu", "2"), (Decimal("2.5"), "cpu", "2500m"), (1000, "cpu", "1k"),
    (1500, "cpu", "1500"), (Decimal("1e-7"), "cpu", "100n"), (2**30, "cpu", "1073741824"), (3, "pods", "3"),
])
def test_formats_in_canonical_form(amount, resource, text):
    assert format_quantity(amount, resource) == text
    assert parse_quantity(text) == amount       # and the text reads back as the same amount


@pytest.mark.parametrize("text, resource, form", [
    ("4096Mi", "memory", "4Gi"), (0.5, "cpu", "500m"), ("1e3", "cpu", "1k"), ("100n", "cpu", "100n"),
])
def test_canonical(text, resource, form):
    assert canonical(text, resource) == form
