"""Faults asked for per request (the ``X-Sim-Fail`` header) or by the simulator's behaviour.

Header grammar: a kind, then optional ``;name=value`` parameters::

    X-Sim-Fail: 503                  error answer with that status (any 400-599), nothing accepted
    X-Sim-Fail: 429;retry_after=2    with a Retry-After header
    X-Sim-Fail: 400;code=21211       with this provider error code in the body
    X-Sim-Fail: timeout;seconds=10   accept the message, answer only after that long
    X-Sim-Fail: reset                accept the message, then break the connection mid-answer
    X-Sim-Fail: reset-before         break the connection before answering; nothing accepted
    X-Sim-Fail: invalid-json         accept the message, answer success with a body that is not JSON
    X-Sim-Fail: invalid-json;status=500   a non-JSON error answer; nothing accepted
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = "X-Sim-Fail"

#: Faults after which the message counts as accepted (the caller cannot tell, which is the point).
ACCEPTING_KINDS = frozenset({"timeout", "reset", "invalid-json"})


class FaultSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Fault:
    kind: str  # "status", "timeout", "reset", "reset-before", "invalid-json"
    status: int | None = None
    retry_after: int | None = None
    code: str | None = None
    seconds: float | None = None

    @property
    def accepts(self) -> bool:
        """Whether the message is accepted (sent) before the fault shows."""
        return self.kind in ACCEPTING_KINDS and not (self.kind == "invalid-json" and self.status is not None)


def parse_fault(value: str) -> Fault:
    kind, *raw_params = (part.strip() for part in value.split(";"))
    params: dict[str, str] = {}
    for raw in raw_params:
        name, sep, param = raw.partition("=")
        if not sep or not name.strip():
            raise FaultSyntaxError(f"{HEADER}: parameter {raw!r} is not name=value")
        params[name.strip().lower()] = param.strip()
    kind = kind.lower()
    allowed = {"status": {"retry_after", "code"}, "timeout": {"seconds"}, "invalid-json": {"status"}}
    if kind.isdigit():
        status = int(kind)
        if not 400 <= status <= 599:
            raise FaultSyntaxError(f"{HEADER}: a status must be 400-599, got {status}")
        _only(params, allowed["status"])
        return Fault(
            kind="status",
            status=status,
            retry_after=_whole(params, "retry_after"),
            code=params.get("code") or None,
        )
    if kind == "timeout":
        _only(params, allowed["timeout"])
        seconds = params.get("seconds")
        try:
            parsed = float(seconds) if seconds is not None else None
        except ValueError:
            raise FaultSyntaxError(f"{HEADER}: seconds must be a number, got {seconds!r}") from None
        if parsed is not None and parsed < 0:
            raise FaultSyntaxError(f"{HEADER}: seconds must be >= 0")
        return Fault(kind="timeout", seconds=parsed)
    if kind in ("reset", "reset-before"):
        _only(params, set())
        return Fault(kind=kind)
    if kind == "invalid-json":
        _only(params, allowed["invalid-json"])
        error_status = _whole(params, "status")
        if error_status is not None and not 400 <= error_status <= 599:
            raise FaultSyntaxError(f"{HEADER}: invalid-json status must be an error status 400-599")
        return Fault(kind="invalid-json", status=error_status)
    raise FaultSyntaxError(
        f"{HEADER}: unknown fault {kind!r}; use a status (400-599), timeout, reset, reset-before or invalid-json"
    )


def _only(params: dict[str, str], allowed: set[str]) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        raise FaultSyntaxError(f"{HEADER}: unexpected parameter(s) {', '.join(extra)}")


def _whole(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise FaultSyntaxError(f"{HEADER}: {name} must be a whole number, got {value!r}")
    return int(value)
