"""Learning-rate schedules as pure functions of time ``t`` and their hyper-parameters.

Each function returns the LR at ``t`` (an epoch or optimizer-step index; fractional epochs for
:func:`cosine_warm_restarts`). ``base`` is the group's base LR and may be negative: every schedule
scales it multiplicatively, so its sign is kept, never flipped.
"""

from __future__ import annotations

import math
from typing import Literal, get_args


def step_decay(t: float, base: float, step_size: int, gamma: float) -> float:
    """``base * gamma ** floor(t / step_size)`` (torch ``StepLR``)."""
    return base * gamma ** (int(t) // step_size)


def exponential_decay(t: float, base: float, gamma: float | None = None, k: float | None = None) -> float:
    """``base * gamma ** t`` (torch ``ExponentialLR``), or the continuous form ``base * exp(-k t)``."""
    if gamma is not None:
        return base * gamma**t
    if k is None:
        raise ValueError("Give one of `gamma` and `k`.")
    return base * math.exp(-k * t)


def _cosine(eta_max: float, eta_min: float, position: float, length: float) -> float:
    # torch's operand order (``pi * T_cur / T_i``), so that equal inputs give torch's LR to the bit.
    return eta_min + (eta_max - eta_min) * (1 + math.cos(math.pi * position / length)) / 2


def cosine_annealing(t: float, base: float, T_max: int, eta_min: float = 0.0) -> float:
    """Cosine from ``base`` to ``eta_min`` over ``T_max``, then held at ``eta_min``."""
    return _cosine(base, eta_min, min(t, T_max), T_max)


def warm_restart_position(t: float, T_0: int, T_mult: int) -> tuple[float, int]:
    """``(T_cur, T_i)``: the position inside the current SGDR period and that period's length.

    Periods have integer lengths ``T_0, T_0*T_mult, ...``, so they start at integer epochs and the period
    of ``t`` is found with integers alone (no floating-point logarithm, which misplaces exact restarts:
    ``math.log(243, 3)`` is ``4.999999999999999``).

    >>> warm_restart_position(121, T_0=1, T_mult=3)  # 1 + 3 + 9 + 27 + 81 = 121: a restart
    (0, 243)
    >>> warm_restart_position(2.5, T_0=2, T_mult=2)
    (0.5, 4)
    """
    if t < 0:
        raise ValueError(f"`t` must be >= 0, got {t}.")
    epoch = math.floor(t)
    start, length = 0, T_0
    if T_mult == 1:
        start = epoch - epoch % T_0
    else:
        while epoch >= start + length:
            start += length
            length *= T_mult
    return t - start, length


def cosine_warm_restarts(t: float, base: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> float:
    """SGDR: cosine annealing restarted after ``T_0``, ``T_0*T_mult``, ... epochs (``t`` may be fractional)."""
    T_cur, T_i = warm_restart_position(t, T_0, T_mult)
    return _cosine(base, eta_min, T_cur, T_i)


CyclicMode = Literal["triangular", "triangular2", "exp_range"]
CYCLIC_MODES: tuple[str, ...] = get_args(CyclicMode)


def cyclic(
    t: float,
    base_lr: float,
    max_lr: float,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> float:
    """Cyclical LR (Smith, 2017) between ``base_lr`` and ``max_lr`` (torch ``CyclicLR``)."""
    down = step_size_up if step_size_down is None else step_size_down
    total = float(step_size_up + down)
    ratio = step_size_up / total
    cycle = math.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    height = (max_lr - base_lr) * scale
    if mode == "triangular":
        amplitude = 1.0
    elif mode == "triangular2":
        amplitude = 1 / (2.0 ** (cycle - 1))
    else:
        amplitude = gamma**t
    return base_lr + height * amplitude


AnnealStrategy = Literal["cos", "linear"]
ANNEAL_STRATEGIES: tuple[str, ...] = get_args(AnnealStrategy)


def one_cycle(
    t: float,
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> float:
    """1cycle (Smith & Topin, 2018): warm up to ``max_lr``, then anneal far below the start (torch ``OneCycleLR``).

    ``t`` beyond the last step holds the final LR.
    """
    initial = max_lr / div_factor
    final = initial / final_div_factor
    warm_end = float(pct_start * total_steps) - 1
    last = total_steps - 1
    t = min(t, last)
    # torch's phases: (end step, start LR, end LR), a phase taken while t <= its end step.
    if t <= warm_end:
        start_step, end_step, start_lr, end_lr = 0.0, warm_end, initial, max_lr
    elif three_phase and t <= 2 * warm_end:
        start_step, end_step, start_lr, end_lr = warm_end, 2 * warm_end, max_lr, initial
    elif three_phase:
        start_step, end_step, start_lr, end_lr = 2 * warm_end, last, initial, final
    else:
        start_step, end_step, start_lr, end_lr = warm_end, last, max_lr, final
    pct = (t - start_step) / (end_step - start_step)
    if anneal_strategy == "cos":
        # torch's `_annealing_cos`, operand for operand.
        return end_lr + (start_lr - end_lr) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end_lr - start_lr) * pct + start_lr


DecayShape = Literal["linear", "cosine", "1-sqrt"]
DECAY_SHAPES: tuple[str, ...] = get_args(DecayShape)


def warmup_stable_decay(
    t: float,
    base: float,
    warmup: int,
    decay: int,
    total: int,
    start_factor: float = 0.0,
    eta_min: float = 0.0,
    shape: str = "linear",
) -> float:
    """Warmup-stable-decay: a linear warmup over ``warmup``, the base LR, then a decay to ``eta_min`` over the
    last ``decay`` of ``total``; ``eta_min`` holds from ``total`` on.

    With ``p`` the fraction of the decay done, the LR is ``eta_min + (base - eta_min) * f(p)``, where ``f(p)`` is
    ``1 - p`` (``"linear"``), ``(1 + cos(pi p)) / 2`` (``"cosine"``) or ``1 - sqrt(p)`` (``"1-sqrt"``).

    Example:
        >>> [round(warmup_stable_decay(t, 1.0, warmup=2, decay=4, total=10, shape="1-sqrt"), 3) for t in range(11)]
        [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.293, 0.134, 0.0]
    """
    if t < warmup:
        return base * (start_factor + (1.0 - start_factor) * t / warmup)
    decay_start = total - decay
    if t < decay_start:
        return base
    if t >= total:
        return eta_min
    p = (t - decay_start) / decay
    if shape == "linear":
        f = 1.0 - p
    elif shape == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        f = 1.0 - math.sqrt(p)
    return eta_min + (base - eta_min) * f
