"""The SDK's one rule for times to live (state items, locks, published events).

``ttl`` is a number of seconds (int or float) or a :class:`datetime.timedelta`:

* ``None`` where the parameter is optional: no TTL (the item or event never expires);
* a positive, finite duration: sent as whole seconds, **fractions rounded up** (``0.2`` -> 1,
  ``1.5`` -> 2), so nothing expires before the time asked for;
* anything else (zero, a negative number such as -1, NaN, infinity, a bool, a non-number) raises
  :class:`~layotto.client.InvalidArgument` naming the parameter, before any call is made.
"""

from __future__ import annotations

import datetime as dt
import math

from layotto.client._errors import InvalidArgument

__all__ = ["ttl_seconds"]


def ttl_seconds(ttl: object, parameter: str = "ttl") -> int:
    """``ttl`` (seconds, or a timedelta) as positive whole seconds, fractions rounded up.

    Raises :class:`InvalidArgument` (``field`` = ``parameter``) for anything but a positive,
    finite number of seconds.
    """
    if isinstance(ttl, dt.timedelta):
        seconds: float = ttl.total_seconds()
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        seconds = ttl
    else:
        raise _invalid(parameter, f"must be a number of seconds or a timedelta, got {type(ttl).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise _invalid(parameter, f"must be a positive, finite number of seconds (None for no TTL), got {seconds!r}")
    return math.ceil(seconds)


def _invalid(parameter: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{parameter}: {problem}", code="INVALID_ARGUMENT", metadata={"field": parameter})
