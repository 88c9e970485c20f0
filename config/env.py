"""The one place that reads the process environment.

Every setting is typed and validated here, so a bad value fails at start-up with a message that
names the variable, instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import builtins
import math
import os
import re
from collections.abc import Mapping
from typing import overload

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_RATE_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_RATE_PERIODS |= {"d": 86400, "day": 86400}


class Env:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def _raw(self, name: builtins.str) -> builtins.str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    @overload
    def str(self, name: builtins.str, default: builtins.str) -> builtins.str: ...

    @overload
    def str(self, name: builtins.str, default: None = None) -> builtins.str | None: ...

    def str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str | None:
        value = self._raw(name)
        return default if value is None else value

    def bool(self, name: builtins.str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}.")

    def int(
        self,
        name: builtins.str,
        default: builtins.int,
        *,
        minimum: builtins.int | None = None,
        maximum: builtins.int | None = None,
    ) -> builtins.int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}.") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}.")
        if maximum is not None and number > maximum:
            raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {number}.")
        return number

    def float(
        self,
        name: builtins.str,
        default: builtins.float,
        *,
        minimum: builtins.float = 0.0,
        maximum: builtins.float | None = None,
    ) -> builtins.float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a number, got {value!r}.") from None
        if not math.isfinite(number):  # float() takes "nan" and "inf", which no bound check refuses
            raise ImproperlyConfigured(f"{name} must be a finite number, got {value!r}.")
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise ImproperlyConfigured(f"{name} must be {bound}, got {number}.")
        return number

    def list(self, name: builtins.str, default: builtins.list[builtins.str]) -> builtins.list[builtins.str]:
        value = self._raw(name)
        if value is None:
            return list(default)
        return [item.strip() for item in value.split(",") if item.strip()]

    def choice(self, name: builtins.str, default: builtins.str, choices: set[builtins.str]) -> builtins.str:
        value = self._raw(name)
        if value is None:
            return default
        if value not in choices:
            raise ImproperlyConfigured(f"{name} must be one of {sorted(choices)}, got {value!r}.")
        return value

    def millisecond_range(self, name: builtins.str, default: builtins.str) -> tuple[builtins.int, builtins.int]:
        """A latency like ``250`` or ``100-500`` (milliseconds) as an inclusive (low, high) pair."""
        value = self._raw(name) or default
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", value)
        if not match:
            raise ImproperlyConfigured(f"{name} must be N or LOW-HIGH in milliseconds, got {value!r}.")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        if high < low:
            raise ImproperlyConfigured(f"{name}: LOW must not exceed HIGH, got {value!r}.")
        return low, high

    def rate(self, name: builtins.str, default: builtins.str) -> tuple[builtins.int, builtins.int]:
        """A rate like ``100/m``, ``100/min``, ``100/5m`` or a bare ``100`` (per minute) as (count, seconds)."""
        value = self._raw(name) or default
        match = re.fullmatch(r"(\d+)\s*(?:/\s*(\d*)\s*([a-z]+))?", value.lower())
        unit = match.group(3) if match else None
        if unit is not None and len(unit) > 2 and unit.endswith("s") and unit[:-1] in _RATE_PERIODS:
            unit = unit[:-1]  # "mins", "minutes", "hours"
        if not match or (unit is not None and unit not in _RATE_PERIODS):
            raise ImproperlyConfigured(
                f"{name} must be a rate like 100/m, 100/min, 100/h or 100 (per minute), got {value!r}."
            )
        count, multiplier = int(match.group(1)), int(match.group(2) or 1)
        if count < 1 or multiplier < 1:
            raise ImproperlyConfigured(f"{name} must allow at least 1 request in at least 1 second, got {value!r}.")
        return count, multiplier * _RATE_PERIODS[unit or "m"]


env = Env()
