"""The curvature bound ``2 / lambda_max``: exact on quadratics, a real stability edge, and side-effect free."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lr_callbacks.curvature import hessian_max_eigenvalue, max_stable_lr, sgd_stability_factor, top_eigenvalue


class Point(nn.Module):
    """A bare parameter vector ``x``: the loss functions below define the landscape."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.x = nn.Parameter(x.clone())


def quadratic(a: torch.Tensor):
    """``f(x) = x^T A x / 2`` (Hessian ``A``)."""
    return lambda model, batch: 0.5 * model.x @ a @ model.x


def random_spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.linspace(0.1, 5.0, n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


@pytest.mark.parametrize("a", [0.5, 3.0, 40.0])
def test_scalar_quadratic_gives_two_over_a(a: float) -> None:
    model = Point(torch.tensor([1.7]))
    lr = max_stable_lr(model, lambda m, b: a * m.x.pow(2).sum() / 2, None)
    assert lr == pytest.approx(2.0 / a, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_spd_quadratic_matches_eigvalsh(seed: int) -> None:
    a = random_spd(8, seed)
    model = Point(torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    lam = hessian_max_eigenvalue(model, quadratic(a), None, iters=1000, tol=1e-12)
    exact = float(torch.linalg.eigvalsh(a).max())
    assert lam == pytest.approx(exact, rel=1e-6)
    assert max_stable_lr(model, quadratic(a), None, iters=1000, tol=1e-12) == pytest.approx(2.0 / exact, rel=1e-6)


def _gd_final_norm(a: torch.Tensor, lr: float, steps: int = 3000) -> float:
    x = torch.ones(a.shape[0], dtype=torch.float64)
    for _ in range(steps):
        x = x - lr * (a @ x)
    return float(x.norm())


def test_gradient_descent_converges_below_the_bound_and_diverges_above() -> None:
    a = random_spd(6, 3)
    bound = max_stable_lr(Point(torch.ones(6, dtype=torch.float64)), quadratic(a), None, iters=1000, tol=1e-12)
    start = math.sqrt(6)
    assert _gd_final_norm(a, 0.99 * bound) < 1e-6 * start
    assert _gd_final_norm(a, 1.01 * bound) > 1e6 * start


def test_indefinite_hessian_reports_the_top_of_the_spectrum() -> None:
    # Eigenvalues -5 (dominant in magnitude) and 2: the largest algebraic one is 2.
    a = torch.diag(torch.tensor([-5.0, 2.0], dtype=torch.float64))
    model = Point(torch.tensor([0.3, 0.4], dtype=torch.float64))
    assert hessian_max_eigenvalue(model, quadratic(a), None, iters=500, tol=1e-12) == pytest.approx(2.0, rel=1e-6)
    # Concave everywhere: no step size is unstable.
    assert max_stable_lr(model, quadratic(-a.abs()), None, iters=500) == math.inf


def test_network_is_left_untouched() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 1))
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    nn.functional.mse_loss(model(x), y).backward()  # existing grads must survive
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()

    lr = max_stable_lr(model, lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]), (x, y), iters=50)

    assert 0 < lr < math.inf
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # incl. BatchNorm statistics
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert torch.equal(rng, torch.get_rng_state())  # dropout drew from a forked stream


def test_linear_loss_has_no_curvature() -> None:
    model = Point(torch.ones(3))
    assert hessian_max_eigenvalue(model, lambda m, b: m.x.sum(), None) == 0.0
    assert max_stable_lr(model, lambda m, b: m.x.sum(), None) == math.inf


@pytest.mark.parametrize(("kwargs", "name"), [({"iters": 0}, "iters"), ({"tol": 0.0}, "tol")])
def test_bad_arguments_name_themselves(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        max_stable_lr(Point(torch.ones(1)), lambda m, b: m.x.pow(2).sum(), None, **kwargs)


def test_top_eigenvalue_counts_its_hessian_vector_products() -> None:
    a = random_spd(6, 1)
    model = Point(torch.ones(6, dtype=torch.float64))
    lam, hvps = top_eigenvalue(model, quadratic(a), None, iters=7, tol=1e-30)
    assert hvps == 7  # no early stop with this tolerance: one product per iteration
    assert lam == pytest.approx(hessian_max_eigenvalue(model, quadratic(a), None, iters=7, tol=1e-30))
    # An indefinite Hessian runs a second, shifted power iteration: -5 and 4.9 are too close for the first run to
    # settle within 50 iterations, so it takes all 50, and the second adds more.
    indefinite = torch.diag(torch.tensor([-5.0, 4.9, 2.0], dtype=torch.float64))
    lam, hvps = top_eigenvalue(
        Point(torch.ones(3, dtype=torch.float64)), quadratic(indefinite), None, iters=50, tol=1e-30
    )
    assert 50 < hvps <= 100


def test_attention_models_get_a_curvature_estimate_equal_to_the_exact_hessian() -> None:
    """The fused attention kernels have no second derivative; the probe runs the math kernel instead."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(4, 1, batch_first=True).double()
    x = torch.randn(3, 5, 4, dtype=torch.float64)

    def loss_fn(m: nn.Module, b: torch.Tensor) -> torch.Tensor:
        return m(b, b, b, need_weights=False)[0].pow(2).mean()

    lam = hessian_max_eigenvalue(attention, loss_fn, x, iters=2000, tol=1e-13)
    params = list(attention.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])

    def as_function(vector: torch.Tensor) -> torch.Tensor:
        chunks, offset = {}, 0
        for name, p in attention.named_parameters():
            chunks[name] = vector[offset : offset + p.numel()].reshape(p.shape)
            offset += p.numel()
        out = torch.func.functional_call(attention, chunks, (x, x, x), {"need_weights": False})[0]
        return out.pow(2).mean()

    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        exact = float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(as_function, flat)).max())
    assert lam == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize(
    ("momentum", "dampening", "nesterov", "factor"),
    [
        (0.0, 0.0, False, 1.0),
        (0.9, 0.0, False, 1.9),
        (0.9, 0.5, False, 3.8),
        (0.9, 0.0, True, 1.9 / 2.8),
        (0.0, 0.3, False, 1.0),
    ],
)
def test_sgd_stability_factor(momentum: float, dampening: float, nesterov: bool, factor: float) -> None:
    assert sgd_stability_factor(momentum, dampening, nesterov) == pytest.approx(factor)


def test_sgd_stability_factor_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="`momentum`"):
        sgd_stability_factor(1.0)
    with pytest.raises(ValueError, match="`dampening`"):
        sgd_stability_factor(0.5, dampening=-0.1)
