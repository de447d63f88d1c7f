"""The one timestamp reader (Kubernetes, the hub, admins' filters) and the one human quantity
formatter: table tests."""

from datetime import datetime, timedelta, timezone

import pytest

from ptjaas_spawner.quantity import human_quantity
from ptjaas_spawner.timestamps import parse_time

UTC = timezone.utc


@pytest.mark.parametrize("text, expected", [
    ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2026-01-02T03:04:05.123456789Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),  # kube MicroTime+
    ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),                                    # a date alone: UTC
    (" 2026-11-30T12:00 ", datetime(2026, 11, 30, 12, tzinfo=UTC)),
    ("yesterday", None), ("", None), (None, None), (1767322245, None),
])
def test_parse_time_reads_every_form_as_an_aware_datetime_or_none(text, expected):
    got = parse_time(text)
    assert got == expected
    assert got is None or got.utcoffset() is not None
    if got is not None and text.endswith("+02:00"):
        assert got.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize("value, resource, text", [
    ("4Gi", "memory", "4Gi"), (1536 * 2**20, "memory", "1536Mi"), ("1.5Gi", "memory", "1536Mi"),
    (10**12, "requests.storage", "1T"), (0, "memory", "0"),
    ("500m", "cpu", "0.5"), (2, "cpu", "2"), (0.33333, "cpu", "0.333"), ("0", "cpu", "0"),
    (2, "gpus", "2"), (3.0, "servers", "3"),
])
def test_human_quantity_is_the_one_way_amounts_are_shown(value, resource, text):
    assert human_quantity(value, resource) == text
