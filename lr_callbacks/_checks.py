"""Argument checks shared by the callbacks: each error names the argument and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")
    return value


def check_number(
    name: str,
    value: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    integer: bool = False,
) -> Any:
    """Check that ``value`` is a finite real (or integer) number within the given bounds."""
    kind = "an integer" if integer else "a finite number"
    bounds = [f"{op} {b}" for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None]
    wanted = kind + (" " + " and ".join(bounds) if bounds else "")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or (integer and not float(value).is_integer()) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be {wanted}, got {value!r}.")
    if (
        (gt is not None and not value > gt)
        or (ge is not None and not value >= ge)
        or (lt is not None and not value < lt)
        or (le is not None and not value <= le)
    ):
        raise ValueError(f"`{name}` must be {wanted}, got {value!r}.")
    return int(value) if integer else value


def per_group(name: str, value: float | Sequence[float], n_groups: int) -> list[float]:
    """Broadcast a scalar to every param group, or check a per-group sequence's length."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n_groups:
            raise ValueError(f"`{name}` has {len(value)} values but the optimizer has {n_groups} param groups.")
        return [float(v) for v in value]
    return [float(value)] * n_groups
