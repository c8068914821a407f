"""Spike statistics: decide whether one monitored value is a spike, then learn from it.

**The detector protocol.** :class:`~lr_callbacks.spike.guard.SpikeGuard` takes a detector object: one of these, or
a user's own. A detector needs three methods, and may offer four more:

- ``check(x: float) -> bool`` (required): whether ``x`` is a spike, judged against the statistics so far, which
  it then updates. It is called once per check, in order; a non-finite ``x`` should be a spike.
- ``state_dict() -> dict`` and ``load_state_dict(state: dict)`` (required): the statistics, for checkpoints.
- ``suspect: bool`` (optional, default ``False``): after a calm check, whether the value still lay beyond what the
  detector counts as calm; the guard then does not take the weights as a good state to roll back to.
- ``level: float | None`` (optional): the running level the next value is compared with, for reports.
- ``check_tensor(x: Tensor) -> Tensor`` and ``suspect_tensor() -> Tensor | None`` (optional): the same decision on a
  0-d tensor without reading it back to the host, for the guard's device path on accelerators; without them the
  guard reads the value back every step.
- ``hold()`` / ``hold_if(flag)`` (optional): forget the last check (after a rollback).

Its ``repr`` is its identity: it is part of the guard's ``state_key``, so it must name every setting and no memory
address (subclass :class:`SpikeDetector` and list the settings in ``IDENTITY``, as the detectors here do). A
detector whose ``repr`` is Python's default is identified by its class alone. Subclassing :class:`SpikeDetector`
also makes it configurable from LightningCLI (``class_path`` / ``init_args``) and Hydra (``_target_``).

Each detector keeps its statistics either as Python floats (:meth:`SpikeDetector.check`, for values read on
the host) or as 0-d float64 tensors on the value's device (:meth:`SpikeDetector.check_tensor`, which never
reads a tensor back to the host). Both run the same IEEE operations in the same order, so they take the same
decisions and keep bit-identical statistics; :class:`TailDetector` takes logarithms, which torch and Python may
round differently in the last bit, so its two paths agree to that rounding.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lr_callbacks._checks import check_number

_log = math.log
_KAPPA = 0.5
_CAP = 1.5


def _dtype(device: torch.device) -> torch.dtype:
    """float64 for exact statistics; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


class SpikeDetector:
    """Base of the detectors. ``check(x)`` returns whether ``x`` is a spike and updates the statistics.

    A non-finite value is always a spike and never enters the statistics. After a check that was not a spike,
    :attr:`suspect` says whether the value still lay beyond what the detector counts as calm (a rise may be
    starting): the caller should not take it as a good state to roll back to.

    Subclasses keep each constructor argument as an attribute of the same name and list them in
    :attr:`IDENTITY`; the ``repr`` (and so the guard's ``state_key``) is built from them.
    """

    suspect: bool = False
    #: The constructor arguments that tell two detectors apart, in the order they are shown.
    IDENTITY: tuple[str, ...] = ()

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.IDENTITY)
        return f"{type(self).__name__}({args})"

    @property
    def level(self) -> float | None:
        """The running level the next value is compared with; ``None`` before the first value."""
        return None

    def suspect_tensor(self) -> torch.Tensor | None:
        """:attr:`suspect` of the last :meth:`check_tensor`, as a 0-d bool tensor; ``None`` if never suspect."""
        return None

    def check(self, x: float) -> bool:
        """Decide on ``x`` against the statistics so far, then update them (host floats)."""
        raise NotImplementedError

    def check_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """The same as :meth:`check` on a 0-d tensor, with no host read: returns a 0-d bool tensor."""
        raise NotImplementedError

    _STATE: tuple[tuple[str, str, torch.dtype | None], ...] = ()
    """The statistics, as (attribute on the host path, key in the device path's tensors, dtype); ``None`` is the
    device's float dtype. The four methods below keep the two paths in step from it."""
    _t: dict[str, torch.Tensor] | None = None

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The statistics as 0-d tensors on ``device``, made from the host values on first use there."""
        if self._t is None or next(iter(self._t.values())).device != device:
            floats = _dtype(device)
            # torch.full fills on the device; torch.tensor(value, device=...) would copy from the host.
            self._t = {
                key: torch.full((), getattr(self, name), dtype=dtype or floats, device=device)
                for name, key, dtype in self._STATE
            }
        return self._t

    def _sync_from_tensors(self) -> None:
        """Bring device statistics back to host values (one read; at checkpoints or a switch of path)."""
        if self._t is not None:
            t, self._t = self._t, None
            for name, key, _ in self._STATE:
                setattr(self, name, t[key].item())

    def state_dict(self) -> dict[str, Any]:
        self._sync_from_tensors()
        return {name: getattr(self, name) for name, _, _ in self._STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._t = None
        for name, _, _ in self._STATE:
            setattr(self, name, state.get(name, getattr(self, name)))


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

    IDENTITY = ("threshold", "ema")

    def __init__(self, threshold: float = 1.1, ema: float = 0.0) -> None:
        self.threshold = check_number("threshold", threshold, gt=1)
        self.ema = check_number("ema", ema, ge=0, lt=1)
        self.baseline: float | None = None
        self._previous: float | None = None
        self._t: dict[str, torch.Tensor] | None = None

    @property
    def level(self) -> float | None:
        return self.state_dict()["baseline"]

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

    _STATE = (("mean", "m", None), ("var", "v", None), ("count", "n", torch.int64))
    IDENTITY = ("z", "threshold", "ema", "warmup")

    @property
    def level(self) -> float | None:
        state = self.state_dict()
        return state["mean"] if state["count"] else None

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


class TailDetector(SpikeDetector):
    """Step-level rule that learns how far the task's own calm losses stray, on the log of the loss.

    The statistics live on ``y = log(x)``: an EMA mean ``m`` (weight of the past ``ema``) and an EMA of the
    absolute deviation ``s`` (a robust scale). A step's *excess* is ``d = y - m``: ``x`` is ``e^d`` times its
    running level. The detector keeps the *record* ``R``, the largest excess of a calm step so far, and
    measures each step against the bar ``b = max(z * s, R)``, which is the task's own natural tail (the
    scale term covers the start, before any tail is seen). After ``warmup`` values, with ``r = d / b``::

        spike  <=>  d > log(threshold)  and  (r > tail  or  C > persist  or  d > log(guard))

    - ``r > tail``: a single step ``tail`` times further out than anything calm so far, in log terms. With a
      record ratio ``e^R``, that is a loss above ``e^(tail * R)`` times the running level: 40x for a task whose
      calm steps reached 4.4x, 1.3x for one whose steps stay within 10 %.
    - ``C > persist``: a sustained rise (an LR that is briefly too high) whose steps each stay below that
      bar. ``C`` is a CUSUM, ``C <- max(0, C + min(r, CAP) - KAPPA)``: each step above the record adds up to
      ``CAP - KAPPA``, so it takes two or three steps in a row above the record, while a lone extreme adds one
      step's worth and then drains.
    - ``d > log(guard)``: a loss ``guard`` times its running level is a spike however heavy the learned tail.

    A calm step (``r <= 1``) may raise the record. A step above the record that is not a spike (a lone natural
    extreme) is :attr:`suspect`, and raises the record too once the CUSUM has drained back to 0 with no spike;
    an excursion that ends in a spike teaches nothing, and neither does a spike. The mean and scale learn from
    ``min(d, b)``. A value ``<= 0`` has no logarithm: it is neither a spike nor learned (use
    :class:`ZScoreDetector` for losses that can be negative); a non-finite value is always a spike. ``n`` counts
    the positive finite values; the first ``warmup`` of them feed the mean and scale but neither the record nor a
    decision.

    Args:
        tail: How many times the bar a single step's excess must reach, ``> 1``.
        z: Floor of the bar in units of the scale ``s``, ``> 0``.
        persist: CUSUM level of a sustained rise, ``> 0``.
        guard: Ratio to the running level that is always a spike, ``> threshold``.
        threshold: Minimum ratio to the running level, ``>= 1``.
        ema: Weight of the past in the mean and scale, in ``(0, 1)``.
        warmup: Positive finite values seen before the first decision, ``>= 1``.

    Raises:
        ValueError: For a number out of its range; the message names the argument.

    Example:
        >>> import math
        >>> d = TailDetector()
        >>> any(d.check(1.0 + 0.1 * math.sin(i)) for i in range(80))  # calm: within 10 % of 1
        False
        >>> [d.check(x) for x in (50.0, 1.0, 1.25, 1.0, 1.5, 1.5, 1.0)]  # a lone 50x; a lone 1.25x; 1.5x twice
        [True, False, False, False, False, True, False]
        >>> round(math.exp(d.record), 3)  # the calm 1.25x became the record
        1.238
    """

    _STATE = (
        ("mean", "m", None), ("scale", "s", None), ("record", "record", None), ("pending", "pending", None),
        ("cusum", "cusum", None), ("count", "n", torch.int64), ("suspect", "suspect", torch.bool),
    )  # fmt: skip
    KAPPA = _KAPPA  # CUSUM allowance, in units of the bar
    CAP = _CAP  # the most one step's r counts for in the CUSUM
    IDENTITY = ("tail", "z", "persist", "guard", "threshold", "ema", "warmup")

    @property
    def level(self) -> float | None:
        state = self.state_dict()
        return math.exp(state["mean"]) if state["count"] else None

    def __init__(
        self,
        tail: float = 2.5,
        z: float = 3.0,
        persist: float = 1.5,
        guard: float = 1e4,
        threshold: float = 1.1,
        ema: float = 0.95,
        warmup: int = 50,
    ) -> None:
        self.tail = check_number("tail", tail, gt=1)
        self.z = check_number("z", z, gt=0)
        self.persist = check_number("persist", persist, gt=0)
        self.threshold = check_number("threshold", threshold, ge=1)
        self.guard = check_number("guard", guard, gt=self.threshold)
        self.ema = check_number("ema", ema, gt=0, lt=1)
        self.warmup = check_number("warmup", warmup, ge=1, integer=True)
        self._a = 1.0 - self.ema
        self._keep = 1.0 - self._a
        self._log_threshold = math.log(self.threshold)
        self._log_guard = math.log(self.guard)
        # Read in one go by the host check, which runs every step.
        self._constants = (self.z, self.tail, self.persist, self._log_threshold, self._log_guard)
        self.mean = 0.0
        self.scale = 0.0
        self.record = 0.0
        self.pending = 0.0
        self.cusum = 0.0
        self.count = 0
        self.suspect = False
        self._t: dict[str, torch.Tensor] | None = None

    def check(self, x: float) -> bool:
        if self._t is not None:
            self._sync_from_tensors()
        if not 0.0 < x < math.inf:
            self.suspect = False
            return x != x or x == math.inf or x == -math.inf  # NaN and infinities are spikes; the rest is <= 0
        n = self.count
        self.count = n + 1
        if n == 0:
            self.mean = _log(x)
            self.suspect = False
            return False
        m = self.mean
        s = self.scale
        d = _log(x) - m
        spike = suspect = False
        # Below the level with nothing pending, a step is calm and moves no decision state: on to the update.
        if n >= self.warmup and (d > 0.0 or self.cusum != 0.0 or self.pending != 0.0):
            z, tail, persist, log_threshold, log_guard = self._constants
            bar = z * s
            record = self.record
            if record > bar:
                bar = record
            r = d / bar if bar > 0.0 else (math.inf if d > 0.0 else 0.0)
            cusum = self.cusum + (r if r < _CAP else _CAP) - _KAPPA
            if cusum < 0.0:
                cusum = 0.0
            if d > log_threshold and (r > tail or cusum > persist or d > log_guard):
                spike = True
                self.cusum = self.pending = 0.0
            else:
                self.cusum = cusum
                if r > 1.0:
                    suspect = True
                    if d > self.pending:
                        self.pending = d
                else:
                    if d > record:
                        self.record = record = d
                    if cusum == 0.0:
                        pending = self.pending
                        if pending > 0.0:
                            if pending > record:
                                self.record = pending
                            self.pending = 0.0
            if d > bar:
                d = bar
        a = self._a
        self.mean = m + a * d
        self.scale = self._keep * s + a * (d if d > 0.0 else -d)
        self.suspect = suspect
        return spike

    def check_tensor(self, x: torch.Tensor) -> torch.Tensor:
        t = self._tensors(x.device)
        x = x.to(t["m"].dtype)
        m, s, n, record, pending, cusum = t["m"], t["s"], t["n"], t["record"], t["pending"], t["cusum"]
        finite = torch.isfinite(x)
        learn = finite & (x > 0)
        y = torch.log(torch.where(learn, x, torch.ones_like(x)))
        first = n == 0
        decide = learn & ~first & (n >= self.warmup)
        d = y - m
        bar = torch.maximum(self.z * s, record)
        positive = bar > 0
        r = torch.where(
            positive, d / torch.where(positive, bar, torch.ones_like(bar)), torch.where(d > 0, math.inf, 0.0)
        )
        grown = torch.clamp_min(cusum + torch.clamp_max(r, self.CAP) - self.KAPPA, 0.0)
        rule = (r > self.tail) | (grown > self.persist) | (d > self._log_guard)
        spike = ~finite | (decide & (d > self._log_threshold) & rule)
        calm = decide & ~spike
        below = calm & (r <= 1)
        release = below & (grown == 0) & (pending > 0)
        raised = torch.where(below, torch.maximum(record, d), record)
        record.copy_(torch.where(release, torch.maximum(raised, pending), raised))
        pending.copy_(
            torch.where(
                decide & spike,
                0.0,
                torch.where(release, 0.0, torch.where(calm & (r > 1), torch.maximum(pending, d), pending)),
            )
        )
        cusum.copy_(torch.where(decide & spike, 0.0, torch.where(calm, grown, cusum)))
        t["suspect"].copy_(calm & (r > 1))
        dc = torch.where(decide, torch.minimum(d, bar), d)
        a = self._a
        new_m = torch.where(first, y, m + a * dc)
        new_s = torch.where(first, s, self._keep * s + a * torch.abs(dc))
        m.copy_(torch.where(learn, new_m, m))
        s.copy_(torch.where(learn, new_s, s))
        n.add_(learn.to(n.dtype))
        return spike

    def suspect_tensor(self) -> torch.Tensor | None:
        return None if self._t is None else self._t["suspect"]


class MedianDetector(SpikeDetector):
    """A spike is a loss ``ratio`` times the median of the ``window`` losses before it, and more than ``floor`` of
    the loss at the start of training above that median. :class:`~lr_callbacks.spike.guard.SpikeGuard`'s default.

    With ``m`` the median of the last ``window`` values (spikes included, as a user reading the loss curve sees
    them) and ``L0`` the median of the first ``window`` values (the loss scale at the start)::

        spike  <=>  n >= window  and  m > 0  and  x >= ratio * m  and  x - m >= floor * L0

    This is the definition of a *real spike* of ``lr-benchmark spikes`` (3x the median of the 10 steps before, and
    at least 5 % of the initial loss above it), which the detector measures as it goes. The median follows a
    loss that falls fast within half a window (an EMA lags it, so early spikes hide in its lag), a lone spike
    does not move it, and a lasting change of level is taken in after half a window. ``floor`` keeps a
    classifier whose loss is near zero from counting one hard example in a batch as a spike (the loss of a batch
    can then be 10x its median and still tiny). A non-finite value is always a spike and never enters the window.
    After a calm check, :attr:`suspect` says whether the value was at least ``sqrt(ratio)`` times the median.

    Args:
        ratio: Ratio to the window's median from which a value is a spike, ``> 1``.
        window: Values in the median; the first decision is taken on value ``window + 1``, ``>= 1``.
        floor: Least excess over the median of a spike, as a share of the first window's median, ``>= 0``.

    Raises:
        ValueError: For a number out of its range; the message names the argument.

    Example:
        >>> d = MedianDetector()
        >>> [d.check(x) for x in [2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9]]  # falling fast: the first window
        [False, False, False, False, False, False, False, False, False, False]
        >>> [d.check(x) for x in (0.85, 4.2, 0.8, 3.0, 0.8)]  # 4.2 is 3.8x the median 1.1; 3.0 is 2.9x it
        [False, True, False, False, False]
        >>> d.suspect  # 3.0 was more than sqrt(3) times the median: no state to roll back to
        False
    """

    IDENTITY = ("ratio", "window", "floor")

    def __init__(self, ratio: float = 3.0, window: int = 10, floor: float = 0.05) -> None:
        self.ratio = check_number("ratio", ratio, gt=1)
        self.window = check_number("window", window, ge=1, integer=True)
        self.floor = check_number("floor", floor, ge=0)
        self._suspect_ratio = math.sqrt(self.ratio)
        self.values: list[float] = []  # the window, oldest first
        self.initial: float | None = None
        self.count = 0
        self.suspect = False
        self._t: dict[str, torch.Tensor] | None = None

    @property
    def level(self) -> float | None:
        self._sync_from_tensors()
        return _median(self.values) if self.values else None

    def check(self, x: float) -> bool:
        if self._t is not None:
            self._sync_from_tensors()
        self.suspect = False
        if x != x or x in (math.inf, -math.inf):
            return True
        values = self.values
        spike = False
        if len(values) == self.window:
            m = _median(values)
            if self.initial is None:
                self.initial = m
            if m > 0.0:
                spike = x >= self.ratio * m and x - m >= self.floor * self.initial
                self.suspect = not spike and x >= self._suspect_ratio * m
            del values[0]
        values.append(x)
        self.count += 1
        return spike

    def check_tensor(self, x: torch.Tensor) -> torch.Tensor:
        t = self._tensors(x.device)
        x = x.to(t["buf"].dtype)
        buf, filled, initial = t["buf"], t["filled"], t["initial"]
        finite = torch.isfinite(x)
        ordered = torch.sort(buf).values
        w = self.window
        m = ordered[(w - 1) // 2 : w // 2 + 1].mean()
        full = filled >= w
        initial.copy_(torch.where(full & torch.isnan(initial), m, initial))
        decide = finite & full & (m > 0)
        spike = ~finite | (decide & (x >= self.ratio * m) & (x - m >= self.floor * initial))
        t["suspect"].copy_(decide & ~spike & (x >= self._suspect_ratio * m))
        # the window, oldest first: shift left by one and put x last (where finite)
        shifted = torch.cat([buf[1:], x.reshape(1)])
        buf.copy_(torch.where(finite, shifted, buf))
        filled.add_(finite.to(filled.dtype)).clamp_(max=w)
        t["n"].add_(finite.to(filled.dtype))
        return spike

    def suspect_tensor(self) -> torch.Tensor | None:
        return None if self._t is None else self._t["suspect"]

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self._t is None or self._t["buf"].device != device:
            dtype = _dtype(device)
            # Unfilled slots hold +inf at the front (oldest): they sort last and leave the window once it is full.
            values = [math.inf] * (self.window - len(self.values)) + self.values
            self._t = {
                "buf": torch.tensor(values, dtype=dtype, device=device),
                "filled": torch.full((), len(self.values), dtype=torch.int64, device=device),
                "n": torch.full((), self.count, dtype=torch.int64, device=device),
                "initial": torch.full((), math.nan if self.initial is None else self.initial, dtype=dtype,
                                      device=device),
                "suspect": torch.full((), self.suspect, dtype=torch.bool, device=device),
            }  # fmt: skip
        return self._t

    def _sync_from_tensors(self) -> None:
        if self._t is not None:
            t, self._t = self._t, None
            filled = int(t["filled"])
            self.values = t["buf"].tolist()[self.window - filled :]
            initial = float(t["initial"])
            self.initial = None if math.isnan(initial) else initial
            self.count = int(t["n"])
            self.suspect = bool(t["suspect"])

    def state_dict(self) -> dict[str, Any]:
        self._sync_from_tensors()
        return {"values": list(self.values), "initial": self.initial, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._t = None
        self.values = list(state.get("values", self.values))[-self.window :]
        self.initial = state.get("initial", self.initial)
        self.count = state.get("count", self.count)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def has_device_path(detector: Any) -> bool:
    """Whether ``detector`` decides on 0-d tensors (``check_tensor``) without reading them back to the host."""
    check_tensor = getattr(type(detector), "check_tensor", None)
    return check_tensor is not None and check_tensor is not SpikeDetector.check_tensor
