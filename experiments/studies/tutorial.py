"""Seed 002 (tutorial 11, solutions): optimizer trajectories, the LR finder, SGDR, and η < 2/λ_max.

Four independent parts; one that cannot run (California Housing missing) is reported and the others go on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from experiments.report import Section, Table, num
from experiments.studies.base import Study, by_row, commands, failures, verdict
from experiments.studies.runner import Run, RunResult

START = (5.0, 4.0)
CURVATURE = (1.0, 10.0)  # f = x² + 10 y²: Hessian diag(2, 20)
T_0, T_MULT, LR_MAX, LR_MIN = 10, 2, 0.1, 0.001


@dataclass
class TutorialParams:
    trajectory_steps: int = 50
    finder_steps: int = 100
    finder_train_epochs: int = 20
    restart_epochs: int = 100
    gd_steps: int = 100
    bound_factors: list[float] = field(default_factory=lambda: [0.9, 1.1])


class _Point(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(START))


def _surface(module: _Point, batch: Any) -> torch.Tensor:
    return CURVATURE[0] * module.p[0] ** 2 + CURVATURE[1] * module.p[1] ** 2


def quadratic_bound() -> float:
    """``max_stable_lr`` on ``x² + 10y²`` (exact: 2 / 20 = 0.1)."""
    from lr_callbacks.curvature import max_stable_lr

    point = _Point()
    return max_stable_lr(point, lambda _module, batch: _surface(point, batch), None)


def housing_bound(data_home: str | None) -> tuple[float, float, float]:
    """``(max_stable_lr, exact 2/λ_max)`` of the full-batch MSE of the housing linear model, and an upper bound
    on the stable LR of a batch of 32 that holds the training row of largest norm."""
    import numpy as np

    from experiments.data import HousingDataModule
    from experiments.tasks import LinearRegressionTask
    from lr_callbacks.curvature import max_stable_lr

    dm = HousingDataModule(data_home=data_home, batch_size=None)
    dm.setup()
    if dm.train_set is None:
        raise RuntimeError("HousingDataModule.setup() left no training split")
    x, y = dm.train_set
    model = LinearRegressionTask(in_features=x.shape[1])
    estimate = max_stable_lr(model, lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]), (x, y))
    a = np.c_[x.double().numpy(), np.ones(len(x))]
    lam = float(np.linalg.eigvalsh(2 * a.T @ a / len(a)).max())
    # a batch of 32 holding the row of largest norm has curvature at least 2·|row|²/32 along that row
    batch_lam = float(2 * (a**2).sum(1).max() / 32)
    return estimate, 2 / lam, 2 / batch_lam


def finder_curve(metrics: dict[str, float], objects: dict[str, Any]) -> dict[str, Any]:
    """The finder's curve and suggestion, and 2/λ_max of the trained model on the full training set."""
    from lr_callbacks.curvature import max_stable_lr

    finder = next(cb for cb in objects["callbacks"] if type(cb).__name__ == "LRFinder")
    res = finder.result
    x, y = objects["datamodule"].train_set
    bound = max_stable_lr(objects["model"], lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]), (x, y))
    return {
        "finder/suggestion": math.nan if res.suggestion is None else float(res.suggestion),
        "finder/diverged": float(res.diverged),
        "finder/bound": bound,
        "finder/lrs": list(map(float, res.lrs)),
        "finder/losses": list(map(float, res.losses)),
        "finder/smoothed": list(map(float, res.smoothed_losses)),
    }


class TutorialStudy(Study):
    Params = TutorialParams
    key = "tutorial"
    title = "Tutorial figures: trajectories, LR finder, warm restarts, and η < 2/λ_max"
    source = "seed 002 (tutorial 11 solutions: A1, A5, B3, B4, B5)"

    def plan(self) -> list[Run]:
        p = self.params
        runs = [
            Run(
                "trajectories",
                ["experiment=study_trajectories", f"data.steps_per_epoch={p['trajectory_steps']}", "seed=0"],
                row="trajectories",
            ),
            Run(
                "warm_restarts",
                ["experiment=study_warm_restarts", f"trainer.max_epochs={p['restart_epochs']}", "seed=0"],
                row="warm_restarts",
            ),
        ]
        self.quad_bound = quadratic_bound()
        for f in p["bound_factors"]:
            runs.append(
                Run(
                    f"bound_quadratic/x{f:g}",
                    [
                        "experiment=study_stability_quadratic",
                        f"optimizer.lr={f * self.quad_bound:.10g}",
                        f"data.steps_per_epoch={p['gd_steps']}",
                        "seed=0",
                    ],
                    row="bound_quadratic",
                )
            )
        self.housing_error: str | None = None
        try:
            self.house_bound, self.house_exact, self.batch_bound = housing_bound(self.ctx.data_home)
        except (FileNotFoundError, OSError) as err:
            self.housing_error = (
                f"California Housing unavailable, so the LR-finder and housing-bound parts did not run: {err}"
            )
            return runs
        home = [f"data.data_home={self.ctx.data_home}"] if self.ctx.data_home else []
        runs.append(
            Run(
                "lr_finder",
                [
                    "experiment=study_lr_finder",
                    f"callbacks.lr_finder.num_steps={p['finder_steps']}",
                    f"trainer.max_epochs={p['finder_train_epochs']}",
                    f"trainer.check_val_every_n_epoch={p['finder_train_epochs']}",
                    *home,
                    "seed=0",
                ],
                row="lr_finder",
                post=finder_curve,
            )
        )
        for f in p["bound_factors"]:
            runs.append(
                Run(
                    f"bound_housing/x{f:g}",
                    [
                        "experiment=study_stability_housing",
                        f"optimizer.lr={f * self.house_bound:.10g}",
                        f"trainer.max_epochs={p['gd_steps']}",
                        f"trainer.check_val_every_n_epoch={p['gd_steps']}",
                        *home,
                        "seed=0",
                    ],
                    row="bound_housing",
                )
            )
        return runs

    def analyse(self, results: list[RunResult]) -> Section:
        rows = by_row(results)
        tables, figures, analysis = [], [], []
        for part in (self._trajectories, self._finder, self._restarts, self._bounds):
            t, f, a = part(rows)
            tables += t
            figures += f
            analysis += a
        errors = [e for e in (self.housing_error, failures(results)) if e]
        return self.section(
            tables=tables,
            figures=figures,
            analysis=analysis,
            settings=[
                "Trajectories (B3): f = x² + 10y² from (5, 4), 50 steps: SGD η 0.05, momentum η 0.05 β 0.9, RMSprop "
                "η 0.5 (α 0.9), Adam η 0.5; torch optimizers, one Lightning step each per batch.",
                "LR finder (B4): LRFinder(min_lr=1e-5, max_lr=10, 100 steps, exponential, suggestion='steepest', the "
                "tutorial's method) at fit start of mini-batch SGD (batch 32) on the housing linear model; the run "
                "then trains at the suggestion.",
                f"Warm restarts (B5): CosineWarmRestarts(T_0={T_0}, T_mult={T_MULT}, eta_min={LR_MIN}) from "
                f"η = {LR_MAX}, per epoch, as a callback in a real run (XOR MLP as carrier), against the pure "
                "schedule function.",
                "Stability (A1/A5): lr_callbacks.curvature.max_stable_lr (power iteration on Hessian-vector products) "
                "gives 2/λ_max; plain full-batch GD then runs at 0.9× and 1.1× of it, on the quadratic and on the "
                "housing linear model (exact λ_max from the eigenvalues of 2AᵀA/n for comparison).",
            ],
            commands=commands([r.run for r in results]),
            error="; ".join(errors) if errors else None,
        )

    # --- parts ----------------------------------------------------------------------------------------------

    def _trajectories(self, rows: dict[str, list[RunResult]]) -> tuple[list, list, list]:
        r = next((x for x in rows.get("trajectories", []) if x.ok), None)
        if r is None:
            return [], [], []
        steps = self.params["trajectory_steps"]
        names = [k.split("/")[1] for k in r.metrics if k.startswith("trajectory/") and k.endswith("/final_loss")]
        sgd_x, sgd_y = START[0] * (1 - 2 * 0.05) ** steps, START[1] * (1 - 20 * 0.05) ** steps
        table_rows = []
        for n in names:
            x, y, f = (r.get(f"trajectory/{n}/final_{k}") for k in ("x", "y", "loss"))
            expected = f"({num(sgd_x)}, {num(sgd_y)})" if n == "SGD" else "—"
            ok = abs(x - sgd_x) < 1e-4 and abs(y - sgd_y) < 1e-4 if n == "SGD" else None
            table_rows.append([n, f"({num(x)}, {num(y)})", num(f), expected, verdict(ok) if n == "SGD" else "—"])
        from experiments.figures import trajectory_contour

        paths = {n: list(zip(r.history[f"trajectory/{n}/x"], r.history[f"trajectory/{n}/y"])) for n in names}
        fig = trajectory_contour(paths, *CURVATURE)
        losses = {n: r.get(f"trajectory/{n}/final_loss") for n in names}
        ranked = sorted(losses, key=losses.__getitem__)
        text = [
            f"Trajectories: SGD at η = 0.05 zeroes y in one step (1 − 20η = 0) and shrinks x by 0.9 per step, exactly "
            f"the recurrence x_t = (1 − ηa)^t x_0 of solution A1. After {steps} steps the final f ranks "
            + ", ".join(f"{n} {num(losses[n], 3)}" for n in ranked)
            + ". Momentum's effective step η/(1 − β) = 10η (solution A2) is 0.5 along y, so it overshoots and spirals "
            "in (underdamped) instead of gliding along the valley floor; RMSprop and Adam take steps of about η = 0.5 "
            "per coordinate, whatever the curvature, which is what the tutorial means by per-parameter scaling."
        ]
        return (
            [
                Table(
                    f"Optimizer trajectories on x² + 10y² after {steps} steps",
                    ["optimizer", "final (x, y)", "final f", "analytic", "verdict"],
                    table_rows,
                )
            ],
            [self.figure(fig, "trajectories", "Tutorial B3: optimizer trajectories on f(x, y) = x² + 10y²")],
            text,
        )

    def _finder(self, rows: dict[str, list[RunResult]]) -> tuple[list, list, list]:
        r = next((x for x in rows.get("lr_finder", []) if x.ok), None)
        if r is None:
            return [], [], []
        import matplotlib.pyplot as plt

        sug, bound = r.get("finder/suggestion"), r.get("finder/bound")
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.semilogx(r.history["finder/lrs"], r.history["finder/losses"], alpha=0.35, label="loss")
        ax.semilogx(r.history["finder/lrs"], r.history["finder/smoothed"], label="smoothed loss")
        if math.isfinite(sug):
            ax.axvline(sug, color="red", ls="--", label=f"suggestion {sug:.3g} (steepest)")
        ax.axvline(bound, color="black", ls=":", label=f"2/λ_max = {bound:.3g}")
        ax.set(
            xlabel="learning rate (log scale)",
            ylabel="training loss (MSE)",
            title="LR range test, housing linear model, SGD batch 32",
        )
        finite = [v for v in r.history["finder/smoothed"] if math.isfinite(v)]
        if finite:
            top = min(max(finite), 5 * min(finite)) * 1.1
            ax.set_ylim(0, top)
            _mark_off_scale(ax, r.history["finder/lrs"], r.history["finder/losses"], top)
        ax.legend()
        fig.tight_layout()
        below = sug < bound if math.isfinite(sug) else None
        train = r.history.get("train/loss", [])
        trains = bool(train) and math.isfinite(train[-1]) and train[-1] <= train[0]
        rows_ = [
            [
                "suggested LR (steepest descent of the smoothed curve)",
                "a point on the steep descent, below divergence",
                num(sug, 3),
                verdict(below),
            ],
            ["2/λ_max of the full-batch loss (max_stable_lr)", "upper end of usable LRs", num(bound, 4), "—"],
            [
                "sweep stopped on divergence",
                "yes, once the loss explodes",
                "yes" if r.get("finder/diverged") else "no",
                verdict(bool(r.get("finder/diverged"))),
            ],
            [
                f"training at the suggestion for {len(train)} epochs: epoch loss first → last, test RMSE",
                "a good LR to train at",
                f"{num(train[0] if train else math.nan)} → {num(train[-1] if train else math.nan)}, "
                f"RMSE {num(r.get('test/rmse'))}",
                verdict(trains),
            ],
        ]
        lrs = r.history["finder/lrs"]
        stop = lrs[-1] if lrs else math.nan
        text = [
            f"LR finder: the steepest-descent suggestion is η = {num(sug, 3)}; the sweep "
            + (
                f"stopped on divergence at η = {num(stop, 3)}, "
                if r.get("finder/diverged")
                else f"ended at η = {num(stop, 3)}, "
            )
            + f"{num(stop / bound, 2)}× the full-batch curvature bound 2/λ_max = {num(bound, 4)}. "
            + (
                "Training at the suggestion then diverges: the epoch loss goes from "
                f"{num(train[0])} to {num(train[-1])} (the fixed η = 0.01 of the housing section stays stable). The "
                f"sweep's {len(lrs)} steps cover {num(len(lrs) / 516, 2)} of an epoch, while the rows that make a "
                f"batch unstable above η ≈ {num(getattr(self, 'batch_bound', math.nan), 2)} (see the per-batch "
                "bound below) turn up once per epoch: a range test on a small slice of a heavy-tailed data set can "
                "miss the instability that sets the usable LR."
                if not trains
                else "Training at the suggestion converges. Mini-batch steps of 32 rows can still diverge below the "
                "full-batch bound (see the per-batch bound below)."
            )
        ]
        return (
            [Table("LR range test (LRFinder) before training", ["quantity", "tutorial", "measured", "verdict"], rows_)],
            [self.figure(fig, "lr_finder", "Tutorial B4: LR range test with its suggestion and the curvature bound")],
            text,
        )

    def _restarts(self, rows: dict[str, list[RunResult]]) -> tuple[list, list, list]:
        r = next((x for x in rows.get("warm_restarts", []) if x.ok), None)
        if r is None:
            return [], [], []
        import matplotlib.pyplot as plt

        from lr_callbacks.schedules import cosine_warm_restarts

        epochs = self.params["restart_epochs"]
        pure = [cosine_warm_restarts(t, LR_MAX, T_0, T_MULT, LR_MIN) for t in range(epochs)]
        logged = r.history.get("lr", [])
        diff = max((abs(a - b) for a, b in zip(pure, logged)), default=math.nan)
        restarts = [t for t in range(1, len(logged)) if logged[t] > logged[t - 1] + 1e-12]
        expected = []
        t, period = T_0, T_0
        while t < epochs:
            expected.append(t)
            period *= T_MULT
            t += period
        fig, ax = plt.subplots(figsize=(10, 4))
        ax.plot(range(epochs), pure, label="pure function lr_callbacks.schedules.cosine_warm_restarts")
        ax.plot(range(len(logged)), logged, "o", ms=3, label="CosineWarmRestarts callback (LR of each epoch's step)")
        for e in expected:
            ax.axvline(e, color="grey", ls=":", lw=0.8)
        ax.set(
            xlabel="epoch",
            ylabel="learning rate",
            title=f"Cosine annealing with warm restarts (T_0={T_0}, T_mult={T_MULT})",
        )
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=8)  # below the axes, off the curve
        fig.tight_layout()
        rows_ = [
            [
                "restart epochs",
                ", ".join(map(str, expected)) + " (periods 10, 20, 40)",
                ", ".join(map(str, restarts)),
                verdict(restarts == expected),
            ],
            [
                "LR at epoch 0 / just before each restart",
                f"{LR_MAX} / → {LR_MIN}",
                f"{num(logged[0] if logged else math.nan)} / "
                + ", ".join(num(logged[e - 1], 3) for e in expected if e - 1 < len(logged)),
                "—",
            ],
            [
                "max |callback − pure function| over all epochs",
                "0",
                num(diff, 3),
                verdict(diff < 1e-9 if math.isfinite(diff) else None),
            ],
        ]
        return (
            [Table(f"CosineWarmRestarts over {epochs} epochs", ["quantity", "expected", "measured", "verdict"], rows_)],
            [self.figure(fig, "warm_restarts", "Tutorial B5: SGDR schedule, callback vs pure function")],
            [],
        )

    def _bounds(self, rows: dict[str, list[RunResult]]) -> tuple[list, list, list]:
        table_rows, text = [], []
        quad = [x for x in rows.get("bound_quadratic", []) if x.ok]
        house = [x for x in rows.get("bound_housing", []) if x.ok]
        if quad:
            table_rows.append(
                [
                    "quadratic x² + 10y²",
                    "2/20 = 0.1",
                    num(self.quad_bound, 6),
                    verdict(abs(self.quad_bound - 0.1) < 1e-4),
                    "—",
                    "—",
                ]
            )
            for r in quad:
                f0 = _surface(_Point(), None).item()
                f1 = r.get("trajectory/optimizer/final_loss")
                lr = float(next(o for o in r.run.overrides if o.startswith("optimizer.lr=")).split("=")[1])
                stable = lr < self.quad_bound
                table_rows.append(
                    [
                        f"  GD at {r.run.name.split('/x')[1]}× the bound (η = {num(lr, 4)}), "
                        f"{self.params['gd_steps']} steps",
                        "converges" if stable else "diverges",
                        "—",
                        "—",
                        f"f: {num(f0)} → {num(f1)}",
                        verdict((f1 < f0) == stable if math.isfinite(f1) else not stable),
                    ]
                )
        if house:
            table_rows.append(
                [
                    "housing linear model, full-batch MSE",
                    f"2/λ_max (eigvalsh) = {num(self.house_exact, 6)}",
                    num(self.house_bound, 6),
                    verdict(abs(self.house_bound / self.house_exact - 1) < 1e-3),
                    "—",
                    "—",
                ]
            )
            for r in house:
                loss = r.history.get("train/loss", [])
                lr = float(next(o for o in r.run.overrides if o.startswith("optimizer.lr=")).split("=")[1])
                stable = lr < self.house_exact
                grew = not math.isfinite(loss[-1]) or loss[-1] > loss[0]
                table_rows.append(
                    [
                        f"  GD at {r.run.name.split('/x')[1]}× the bound (η = {num(lr, 4)}), {len(loss)} steps",
                        "converges" if stable else "diverges",
                        "—",
                        "—",
                        f"loss: {num(loss[0])} → {num(loss[-1])}",
                        verdict(grew != stable),
                    ]
                )
            table_rows.append(
                [
                    "  one batch of 32 holding the largest-norm row",
                    f"2/λ ≤ {num(self.batch_bound, 3)}",
                    "—",
                    "—",
                    "—",
                    "—",
                ]
            )
        if table_rows:
            text.append(
                "η < 2/λ_max: max_stable_lr recovers the bound (to 1e-4 on the quadratic, against the exact eigenvalue "
                "on housing), and plain gradient descent converges just below it and diverges just above it on both "
                "problems."
                + (
                    f" The bound is for the full-batch loss: a mini-batch step sees its batch's curvature, and a batch "
                    f"of 32 holding the most extreme housing row is stable only below η ≈ {num(self.batch_bound, 2)}. "
                    "That is why mini-batch SGD at η = 0.1 (the spike-adaptive start of the housing section) blows up "
                    "although 0.1 is a fifth of the full-batch bound."
                    if house
                    else ""
                )
            )
        return (
            [
                Table(
                    "Stability bound η < 2/λ_max (solutions A1, A5)",
                    ["problem", "analytic bound", "max_stable_lr", "verdict", "GD outcome", "verdict"],
                    table_rows,
                )
            ]
            if table_rows
            else [],
            [],
            text,
        )


def _mark_off_scale(ax: Any, lrs: list[float], losses: list[float], top: float) -> None:
    """Where the loss leaves the clipped y range (or stops being finite), an arrow at the top says how far it went."""
    beyond = [i for i, v in enumerate(losses) if not (math.isfinite(v) and v <= top)]
    if not beyond:
        return
    i = beyond[0]
    finite = [v for v in losses[i:] if math.isfinite(v)]
    peak = f"up to {num(max(finite), 3)}" if finite else "not finite"
    ax.annotate(f"loss off the scale from lr {num(lrs[i], 3)}: {peak}", (lrs[i], top), xytext=(-10, -28),
                textcoords="offset points", ha="right", fontsize=8, color="darkred",
                arrowprops={"arrowstyle": "->", "color": "darkred"})  # fmt: skip
