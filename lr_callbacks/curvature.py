"""The curvature bound on the learning rate: gradient descent is stable only for ``lr < 2 / lambda_max``.

On ``f(x) = a x^2 / 2`` one step maps ``x`` to ``(1 - lr a) x``, which shrinks only while ``lr < 2 / a``; on a
quadratic with Hessian ``A`` the binding direction is the top eigenvector, so ``lr < 2 / lambda_max(A)``. For a
network the same holds locally with the Hessian of the loss. :func:`hessian_max_eigenvalue` estimates
``lambda_max`` by power iteration on Hessian-vector products (double-backward autograd: one forward pass, one
extra backward per iteration, never the Hessian itself), and :func:`max_stable_lr` turns it into the bound.

Both leave the model untouched: parameters, ``.grad`` and buffers (BatchNorm statistics) are as before, and the
global torch RNG is forked, so dropout in ``loss_fn`` draws nothing from the caller's stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from lr_callbacks._checks import check_number

LossFn = Callable[[nn.Module, Any], Tensor]


def hessian_max_eigenvalue(
    model: nn.Module, loss_fn: LossFn, batch: Any, iters: int = 100, tol: float = 1e-6, seed: int = 0
) -> float:
    """Estimate the largest (algebraic) eigenvalue of the Hessian of ``loss_fn(model, batch)``.

    Power iteration converges to the eigenvalue of largest magnitude. When that one is negative (a saddle or a
    concave direction dominates), a second run on ``H - lambda_1 I`` finds the largest algebraic eigenvalue.

    Args:
        model: The module whose trainable parameters (``requires_grad``) span the Hessian.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``; it must be twice differentiable.
        batch: Passed to ``loss_fn`` as is.
        iters: Maximum number of power iterations (Hessian-vector products) per run.
        tol: Stop once the Rayleigh quotient changes by less than ``tol`` relative to its size.
        seed: Seed of the random start vector (a private generator; the global RNG is not used).

    Returns:
        The estimate of ``lambda_max``. Power iteration approaches it from below.

    Raises:
        ValueError: If ``iters < 1``, ``tol <= 0``, or the model has no trainable parameter.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(1, 1, bias=False)
        >>> loss_fn = lambda m, b: 3.0 * m.weight.pow(2).sum() / 2
        >>> round(hessian_max_eigenvalue(model, loss_fn, None), 6)
        3.0
    """
    return top_eigenvalue(model, loss_fn, batch, iters=iters, tol=tol, seed=seed)[0]


def top_eigenvalue(
    model: nn.Module, loss_fn: LossFn, batch: Any, iters: int = 100, tol: float = 1e-6, seed: int = 0
) -> tuple[float, int]:
    """:func:`hessian_max_eigenvalue` and the number of Hessian-vector products it took (its cost).

    Each product is one extra backward pass through the graph of one forward pass (which is built once).

    >>> from torch import nn
    >>> lam, hvps = top_eigenvalue(nn.Linear(1, 1, bias=False), lambda m, b: 3.0 * m.weight.pow(2).sum() / 2, None)
    >>> round(lam, 6), 1 <= hvps <= 3
    (3.0, True)
    """
    iters = check_number("iters", iters, ge=1, integer=True)
    tol = check_number("tol", tol, gt=0)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("`model` has no parameter with `requires_grad=True`; the Hessian is empty.")
    buffers = [b.detach().clone() for b in model.buffers()]
    try:
        with torch.enable_grad(), torch.random.fork_rng(devices=_devices(params)), _double_backward_kernels():
            loss = loss_fn(model, batch)
            grads = torch.autograd.grad(loss, params, create_graph=True)
        generator = torch.Generator().manual_seed(seed)
        # A gradient that is constant in the parameters (a linear loss) has no graph: its Hessian rows are 0.
        curved = [i for i, g in enumerate(grads) if g.requires_grad]

        count = [0]

        def hvp(v: list[Tensor]) -> list[Tensor]:
            count[0] += 1
            if not curved:
                return [torch.zeros_like(p) for p in params]
            with _double_backward_kernels():
                out = torch.autograd.grad(
                    [grads[i] for i in curved],
                    params,
                    grad_outputs=[v[i] for i in curved],
                    retain_graph=True,
                    allow_unused=True,
                )
            return [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(out, params)]

        start = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
        top = _power_iteration(hvp, start, iters, tol, shift=0.0)
        if top < 0:  # the dominant eigenvalue is negative: find the top of the spectrum of H - top*I
            top = _power_iteration(hvp, start, iters, tol, shift=top) + top
        return top, count[0]
    finally:
        with torch.no_grad():
            for buf, saved in zip(model.buffers(), buffers):
                buf.copy_(saved)


def max_stable_lr(
    model: nn.Module, loss_fn: LossFn, batch: Any, iters: int = 100, tol: float = 1e-6, seed: int = 0
) -> float:
    """The largest stable gradient-descent step on ``loss_fn(model, batch)``: ``2 / lambda_max`` of its Hessian.

    This bounds plain (S)GD. For heavy-ball momentum ``beta`` the bound is ``2 (1 + beta) / lambda_max``; for
    adaptive optimizers (Adam) it does not apply directly. ``inf`` is returned when the loss has no positive
    curvature at this point.

    Args:
        model: The module whose trainable parameters span the Hessian.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``.
        batch: Passed to ``loss_fn``.
        iters: Maximum number of power iterations.
        tol: Relative tolerance on the eigenvalue estimate.
        seed: Seed of the random start vector.

    Returns:
        ``2 / lambda_max`` (``math.inf`` if ``lambda_max <= 0``).

    Raises:
        ValueError: If ``iters < 1``, ``tol <= 0``, or the model has no trainable parameter.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(1, 1, bias=False)
        >>> loss_fn = lambda m, b: 4.0 * m.weight.pow(2).sum() / 2  # a = 4
        >>> round(max_stable_lr(model, loss_fn, None), 6)
        0.5
    """
    lam = hessian_max_eigenvalue(model, loss_fn, batch, iters=iters, tol=tol, seed=seed)
    return 2.0 / lam if lam > 0 else math.inf


def sgd_stability_factor(momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False) -> float:
    """How far torch's SGD may exceed the plain bound: it is stable on a quadratic of curvature ``lambda`` for
    ``lr * lambda < 2 * factor``.

    - plain SGD: ``1``;
    - heavy-ball momentum ``beta`` (torch's default form, ``buf = beta * buf + (1 - dampening) * grad``):
      ``(1 + beta) / (1 - dampening)``;
    - Nesterov (``nesterov=True``, which needs ``dampening = 0``): ``(1 + beta) / (1 + 2 * beta)``, *below* 1 for
      ``beta > 0``. On ``f = lambda x^2 / 2`` its iteration has the characteristic polynomial
      ``z^2 - (1 + beta - a (1 + beta)) z + beta (1 - a)`` with ``a = lr * lambda``, whose root at ``z = -1``
      sits at ``a = 2 (1 + beta) / (1 + 2 beta)``.

    >>> sgd_stability_factor(), sgd_stability_factor(0.9), round(sgd_stability_factor(0.9, nesterov=True), 6)
    (1.0, 1.9, 0.678571)
    """
    momentum = check_number("momentum", momentum, ge=0, lt=1)
    dampening = check_number("dampening", dampening, ge=0, lt=1)
    if nesterov:
        return (1.0 + momentum) / (1.0 + 2.0 * momentum)
    return (1.0 + momentum) / (1.0 - dampening) if momentum > 0 else 1.0


def _power_iteration(
    hvp: Callable[[list[Tensor]], list[Tensor]], start: list[Tensor], iters: int, tol: float, shift: float
) -> float:
    """Rayleigh quotient of ``H - shift*I`` after power iteration from ``start``."""
    v = _normalized(start)
    estimate = math.nan
    for _ in range(iters):
        hv = [h - shift * x for h, x in zip(hvp(v), v)]
        previous, estimate = estimate, float(sum((h * x).sum() for h, x in zip(hv, v)))
        norm = math.sqrt(float(sum(h.pow(2).sum() for h in hv)))
        if norm == 0.0:  # v lies in the null space of H - shift*I
            return 0.0
        v = [h / norm for h in hv]
        if abs(estimate - previous) <= tol * abs(estimate):
            break
    return estimate


def _normalized(vectors: list[Tensor]) -> list[Tensor]:
    norm = math.sqrt(float(sum(x.pow(2).sum() for x in vectors)))
    return [x / norm for x in vectors]


@contextmanager
def _double_backward_kernels() -> Iterator[None]:
    """Kernels that have a second derivative: the math attention kernel (the fused ones have none) and no cuDNN
    (its RNN kernels have none)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH), torch.backends.cudnn.flags(enabled=False):
        yield


def _devices(params: Sequence[Tensor]) -> list[int]:
    """CUDA devices whose RNG ``fork_rng`` must save (none on CPU)."""
    return sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
