"""Spike statistics: decide whether one monitored value is a spike, then learn from it.

Each detector keeps its statistics either as Python floats (:meth:`SpikeDetector.check`, for values read on
the host) or as 0-d float64 tensors on the value's device (:meth:`SpikeDetector.check_tensor`, which never
reads a tensor back to the host). Both run the same IEEE operations in the same order, so they take the same
decisions and keep bit-identical statistics.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lr_callbacks._checks import check_number


def _dtype(device: torch.device) -> torch.dtype:
    """float64 for exact statistics; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


class SpikeDetector:
    """Base of the detectors. ``check(x)`` returns whether ``x`` is a spike and updates the statistics.

    A non-finite value is always a spike and never enters the statistics.
    """

    def check(self, x: float) -> bool:
        """Decide on ``x`` against the statistics so far, then update them (host floats)."""
        raise NotImplementedError

    def check_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """The same as :meth:`check` on a 0-d tensor, with no host read: returns a 0-d bool tensor."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class RatioDetector(SpikeDetector):
    """The seed's rule: ``x`` is a spike when ``b > 0 and x / b > threshold``.

    The baseline ``b`` is the previous value, or with ``ema > 0`` an exponential moving average
    ``b <- ema * b + (1 - ema) * x`` of the previous values. After a spike the baseline still moves to ``x``
    (when finite), unless :meth:`hold` is called.

    Args:
        threshold: Ratio above which a value is a spike, ``> 1``.
        ema: Weight of the past in the baseline, in ``[0, 1)``; 0 is the previous value.

    Raises:
        ValueError: For a number out of its range; the message names the argument.

    Example:
        >>> d = RatioDetector(threshold=1.1)
        >>> [d.check(x) for x in (1.0, 1.05, 1.2, 1.2, float("nan"))]
        [False, False, True, False, True]
        >>> d.baseline
        1.2
    """

    def __init__(self, threshold: float = 1.1, ema: float = 0.0) -> None:
        self.threshold = check_number("threshold", threshold, gt=1)
        self.ema = check_number("ema", ema, ge=0, lt=1)
        self.baseline: float | None = None
        self._previous: float | None = None
        self._t: dict[str, torch.Tensor] | None = None

    def _next(self, b: float, x: float) -> float:
        return x if self.ema == 0 else self.ema * b + (1.0 - self.ema) * x

    def check(self, x: float) -> bool:
        if self._t is not None:
            self._sync_from_tensors()
        b = self.baseline
        finite = math.isfinite(x)
        spike = not finite or (b is not None and b > 0 and x / b > self.threshold)
        self._previous = b
        if finite:
            self.baseline = x if b is None else self._next(b, x)
        return spike

    def check_tensor(self, x: torch.Tensor) -> torch.Tensor:
        t = self._tensors(x.device)
        x = x.to(t["b"].dtype)
        b, has = t["b"], t["has"]
        finite = torch.isfinite(x)
        spike = ~finite | (has & (b > 0) & (x / b > self.threshold))
        nxt = x if self.ema == 0 else self.ema * b + (1.0 - self.ema) * x
        t["previous"].copy_(b)
        t["had"].copy_(has)
        b.copy_(torch.where(finite, torch.where(has, nxt, x), b))
        has.logical_or_(finite)
        return spike

    def hold(self) -> None:
        """Put the baseline back to what it was before the last check (the seed rule after a rollback)."""
        if self._t is not None:
            self._t["b"].copy_(self._t["previous"])
            self._t["has"].copy_(self._t["had"])
        else:
            self.baseline = self._previous

    def hold_if(self, flag: torch.Tensor) -> None:
        """:meth:`hold` decided on the device: only where ``flag`` holds, with no host read."""
        t = self._tensors(flag.device)
        torch.where(flag, t["previous"], t["b"], out=t["b"])
        torch.where(flag, t["had"], t["has"], out=t["has"])

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self._t is None or self._t["b"].device != device:
            dtype = _dtype(device)
            # torch.full fills on the device; torch.tensor(value, device=...) would copy from the host.
            b = torch.full((), 0.0 if self.baseline is None else self.baseline, dtype=dtype, device=device)
            has = torch.full((), self.baseline is not None, dtype=torch.bool, device=device)
            self._t = {"b": b, "has": has, "previous": b.clone(), "had": has.clone()}
        return self._t

    def _sync_from_tensors(self) -> None:
        """Bring device statistics back to host floats (one read; at checkpoints or a switch of path)."""
        if self._t is not None:
            self.baseline = float(self._t["b"]) if bool(self._t["has"]) else None
            self._t = None

    def state_dict(self) -> dict[str, Any]:
        self._sync_from_tensors()
        return {"baseline": self.baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._t = None
        self.baseline = state.get("baseline", self.baseline)


class ZScoreDetector(SpikeDetector):
    """Robust step-level rule: a spike lies ``z`` standard deviations above an EMA mean and ``threshold`` × above it.

    With ``m`` and ``s²`` an exponential moving mean and variance of past values (weight of the past ``ema``)::

        spike  <=>  n >= warmup  and  x > m + z * s  and  x - m > (threshold - 1) * |m|

    (the last term is ``x > threshold * m`` for a positive mean: it keeps tiny absolute moves of a very
    steady loss from counting). The statistics then learn from ``min(x, m + z * s)``: a lone spike barely
    moves them, while a lasting change of level is accepted after a few dozen steps instead of being
    flagged forever. ``n`` counts finite values seen; no decision is taken during the first ``warmup``
    of them, but they feed the statistics.

    The EMA variance follows the incremental form ``d = x - m; m += a*d; s² = (1-a)(s² + a*d²)`` with
    ``a = 1 - ema``.

    Args:
        z: Standard deviations above the mean, ``> 0``.
        threshold: Minimum ratio to the mean, ``>= 1``.
        ema: Weight of the past in the mean and variance, in ``(0, 1)``.
        warmup: Finite values seen before the first decision, ``>= 1``.

    Raises:
        ValueError: For a number out of its range; the message names the argument.

    Example:
        >>> d = ZScoreDetector(z=6.0, ema=0.9, warmup=5)
        >>> [d.check(x) for x in (1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 50.0, 1.0)]
        [False, False, False, False, False, False, True, False]
    """

    def __init__(self, z: float = 6.0, threshold: float = 1.1, ema: float = 0.95, warmup: int = 50) -> None:
        self.z = check_number("z", z, gt=0)
        self.threshold = check_number("threshold", threshold, ge=1)
        self.ema = check_number("ema", ema, gt=0, lt=1)
        self.warmup = check_number("warmup", warmup, ge=1, integer=True)
        self._a = 1.0 - self.ema  # weight of the new value
        self._keep = 1.0 - self._a
        self.mean = 0.0
        self.var = 0.0
        self.count = 0
        self._t: dict[str, torch.Tensor] | None = None

    def score(self, x: float) -> float:
        """``(x - m) / s``, the value's distance from the mean in standard deviations (inf when s = 0)."""
        self._sync_from_tensors()
        std = math.sqrt(self.var)
        return (x - self.mean) / std if std > 0 else math.copysign(math.inf, x - self.mean)

    def check(self, x: float) -> bool:
        if self._t is not None:
            self._sync_from_tensors()
        m, v, n = self.mean, self.var, self.count
        if not math.isfinite(x):
            return True
        ready = n >= self.warmup
        bound = m + self.z * math.sqrt(v)
        spike = ready and x > bound and x - m > (self.threshold - 1.0) * abs(m)
        if n == 0:
            self.mean, self.var = x, 0.0
        else:
            a = self._a
            d = (bound if ready and x > bound else x) - m
            self.mean = m + a * d
            self.var = self._keep * (v + a * d * d)
        self.count = n + 1
        return spike

    def check_tensor(self, x: torch.Tensor) -> torch.Tensor:
        t = self._tensors(x.device)
        x = x.to(t["m"].dtype)
        m, v, n = t["m"], t["v"], t["n"]
        finite = torch.isfinite(x)
        ready = n >= self.warmup
        bound = m + self.z * torch.sqrt(v)
        spike = ~finite | (ready & (x > bound) & (x - m > (self.threshold - 1.0) * torch.abs(m)))
        a = self._a
        first = n == 0
        xc = torch.where(ready, torch.minimum(x, bound), x)
        d = xc - m
        new_m = torch.where(first, x, m + a * d)
        new_v = torch.where(first, torch.zeros_like(v), self._keep * (v + a * d * d))
        m.copy_(torch.where(finite, new_m, m))
        v.copy_(torch.where(finite, new_v, v))
        n.add_(finite.to(n.dtype))
        return spike

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self._t is None or self._t["m"].device != device:
            dtype = _dtype(device)
            m = torch.full((), self.mean, dtype=dtype, device=device)
            v = torch.full((), self.var, dtype=dtype, device=device)
            n = torch.full((), self.count, dtype=torch.int64, device=device)
            self._t = {"m": m, "v": v, "n": n}
        return self._t

    def _sync_from_tensors(self) -> None:
        if self._t is not None:
            self.mean, self.var, self.count = float(self._t["m"]), float(self._t["v"]), int(self._t["n"])
            self._t = None

    def state_dict(self) -> dict[str, Any]:
        self._sync_from_tensors()
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._t = None
        self.mean = state.get("mean", self.mean)
        self.var = state.get("var", self.var)
        self.count = state.get("count", self.count)
