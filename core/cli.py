"""Argument types shared by the management commands."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime


def moment(value: str) -> datetime:
    """An ISO-8601 date or date-time; naive values are UTC."""
    try:
        parsed = parse_datetime(value)
        day = None if parsed is not None else parse_date(value)
    except ValueError:
        parsed = day = None
    if parsed is None and day is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO-8601 date or date-time")
    if parsed is None:
        assert day is not None  # one of the two parsed, or we raised above
        parsed = datetime(day.year, day.month, day.day)
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def int_between(low: int, high: int):
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{value!r} must be from {low} to {high}")
        return number

    parse.__name__ = f"whole number from {low} to {high}"
    return parse


def non_negative_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must not be negative")
    return number
