"""Seed 000, experiment 1: y = 2x by SGD with the LR alternating +η / −η every epoch.

For full-batch gradient descent on the MSE the error ``e = w − 2`` obeys ``e ← (1 − ηh) e`` on a positive
epoch and ``e ← (1 + ηh) e`` on a negative one, with ``h = 2·mean(x²)`` the curvature of the loss in
``w``. One pair of epochs therefore contracts the error by ``1 − η²h²``, and the loss (∝ e²) by its
square: after ``E`` epochs ``L_E ≈ L_0 (1 − η²h²)^E``. With ``S`` mini-batches per epoch the first-order
terms of a pair still cancel and the contraction is about ``(1 − η²h²)^S`` per pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from experiments.report import Figure, Section, Table, mean_std, num
from experiments.studies.base import (
    Study,
    by_row,
    commands,
    failures,
    values,
    verdict,
    within_factor,
)
from experiments.studies.runner import Run, RunResult

SEED_LOSS = 0.003  # "loss ~0.003 after 1000 epochs"
FACTOR = 3.0  # a "~x" claim agrees when the measurement is within x/3 .. 3x


def final_state(metrics: dict[str, float], objects: dict[str, Any]) -> dict[str, float]:
    """Loss on the training set after the last epoch, the weights, and the data's moments."""
    model, dm = objects["model"], objects["datamodule"]
    x, y = dm.train_set
    with torch.no_grad():
        loss = torch.nn.functional.mse_loss(model(x), y)
    return {
        "final/train_loss": float(loss),
        "final/w": float(model.linear.weight.detach().flatten()[0]),
        "final/b": float(model.linear.bias.detach().flatten()[0]),
        "data/mean_x2": float(x.pow(2).mean()),
        "data/steps_per_epoch": float(len(dm.train_dataloader())),
    }


@dataclass
class LinearAlternatingParams:
    epochs: int = 1000
    lr: float = 0.01
    n: int = 100
    minibatch: int | None = 10  # extra row with this batch size; null to skip
    seeds: list[int] = field(default_factory=lambda: [0])


class LinearAlternatingStudy(Study):
    Params = LinearAlternatingParams
    key = "linear_alternating"
    title = "y = 2x with alternating ±η (SignAlternation) vs positive-only"
    source = "seed 000, experiment 1 (linear regression with alternating rates)"

    ROWS: ClassVar[dict] = {
        "alternating": ["callbacks.sign_alternation.pattern=alternate"],
        "positive": ["callbacks.sign_alternation.pattern=positive"],
    }

    def plan(self) -> list[Run]:
        p = self.params
        common = [
            "experiment=study_linear_alternating",
            f"trainer.max_epochs={p['epochs']}",
            f"optimizer.lr={p['lr']}",
            f"data.n={p['n']}",
        ]
        rows = dict(self.ROWS)
        if p.get("minibatch"):
            rows[f"alternating, batch {p['minibatch']}"] = [
                "callbacks.sign_alternation.pattern=alternate",
                f"data.batch_size={p['minibatch']}",
            ]
        runs = []
        for row, extra in rows.items():
            for seed in p["seeds"]:
                name = f"{row.replace(', ', '_').replace(' ', '')}/seed{seed}"
                runs.append(Run(name, [*common, *extra, f"seed={seed}"], row=row, post=final_state))
        return runs

    def analyse(self, results: list[RunResult]) -> Section:
        p = self.params
        eta, epochs = float(p["lr"]), int(p["epochs"])
        rows = by_row(results)
        ok = [r for r in results if r.ok and r.history.get("train/loss")]
        h = 2 * _mean([r.get("data/mean_x2") for r in ok])
        pair = 1 - eta**2 * h**2

        def predicted(r: RunResult, row: str) -> float:
            l0 = r.history["train/loss"][0]
            if row == "positive":
                return l0 * (1 - eta * h) ** (2 * epochs)
            # with mini-batches the epoch-0 mean loss stands in for L_0 (an approximation)
            return l0 * pair ** (r.get("data/steps_per_epoch", 1.0) * epochs)

        main_rows, contraction_rows = [], []
        for row, rs in rows.items():
            good = [r for r in rs if r.ok]
            measured = values(good, "final/train_loss")
            preds = [predicted(r, row) for r in good if r.history.get("train/loss")]
            claim = (
                f"~{SEED_LOSS}"
                if row == "alternating"
                else ("converges (faster)" if row == "positive" else "not in the seed")
            )
            if row == "alternating":
                v = verdict(within_factor(_mean(measured), SEED_LOSS, FACTOR))
            elif row == "positive":
                v = verdict(_mean(measured) < 1e-6 if good else None)
            else:
                v = "extra"
            main_rows.append([row, claim, mean_std(measured, 4), mean_std(preds, 4), v])
            if good and good[0].get("data/steps_per_epoch", 1.0) == 1.0 and row != "positive":
                contraction_rows.append(
                    [row, num(pair, 6), mean_std([_pair_factor(r.history["train/loss"]) for r in good], 6)]
                )
        figs = [self._figure(rows, h, eta)] if ok else []
        alt = _mean(values([r for r in rows.get("alternating", []) if r.ok], "final/train_loss"))
        analysis = [
            f"Full-batch GD on this line has curvature h = 2·mean(x²) = {num(h)}, so with η = {eta} one (+η, −η) "
            f"pair of epochs contracts the error by 1 − η²h² = {num(pair, 6)} and the loss by its square. Over "
            f"{epochs} epochs that leaves a fraction {num(pair**epochs)} of the initial loss, i.e. the "
            f"alternating run has barely moved: measured loss {num(alt)} against the seed's ~{SEED_LOSS}. "
            f"The positive-only run contracts the error by 1 − ηh = {num(1 - eta * h)} per epoch and reaches "
            f"machine precision.",
            "The seed's ~0.003 is therefore not what full-batch alternation gives. It is what alternation gives "
            "with several updates per epoch: the first-order terms of a (+, −) pair cancel exactly (each epoch "
            "sees the whole data set), the second-order terms add up, and the contraction per pair grows to "
            "about (1 − η²h²)^S for S mini-batches (a bit more, since the batches' curvatures h_k vary and "
            "Σ h_k² ≥ S·h²). The mini-batch row shows this; the seed's data size and "
            "batch size are not stated (its script is not part of the document), so the claim cannot be pinned "
            "to one setting. Net descent with alternation is confirmed; the quoted number is not.",
        ]
        return self.section(
            tables=[
                Table(
                    f"Training loss after {epochs} epochs (mean ± std over seeds); 'analytic' is L_0·(1 − η²h²)^(S·E) "
                    "for alternation (S steps per epoch), L_0·(1 − ηh)^(2E) for positive-only",
                    ["run", "seed claim", "measured", "analytic", "verdict"],
                    main_rows,
                ),
                Table(
                    "Error contraction per (+, −) epoch pair, full batch: analytic 1 − η²h² vs measured "
                    "(L_(E−2) / L_0)^(1/(E−2))",
                    ["run", "analytic", "measured"],
                    contraction_rows,
                ),
            ],
            figures=figs,
            analysis=analysis,
            settings=[
                f"y = 2x, x ~ N(0, 1), {p['n']} training points, no noise; Linear(1, 1) (weight and bias), "
                "weights ~ N(0, 0.01²); plain SGD.",
                f"η = {eta}; SignAlternation(pattern=alternate) multiplies it by +1 on even epochs and −1 on odd "
                f"ones; {epochs} epochs; full batch unless the row says otherwise; seeds {list(p['seeds'])}.",
                f"A '~x' claim counts as agreeing when the measurement is within a factor {FACTOR:g} of x.",
            ],
            commands=commands([r.run for r in results]),
            error=failures(results),
        )

    def _figure(self, rows: dict[str, list[RunResult]], h: float, eta: float) -> Figure:
        import matplotlib.pyplot as plt

        from experiments.figures import plot_series

        fig, ax = plt.subplots(figsize=(7, 4))
        for row, rs in rows.items():
            r = next((r for r in rs if r.ok), None)
            if r is None:
                continue
            loss = r.history["train/loss"]
            plot_series(ax, loss, label=f"{row} (seed {r.run.name.rsplit('seed', 1)[-1]})")
        first = next((r for rs in rows.values() for r in rs if r.ok and r.run.row == "alternating"), None)
        if first is not None:
            l0, n = first.history["train/loss"][0], len(first.history["train/loss"])
            ax.plot(
                range(n), [l0 * (1 - eta**2 * h**2) ** t for t in range(n)], "k--", label="analytic L_0(1 − η²h²)^t"
            )
        ax.set(
            yscale="log", xlabel="epoch", ylabel="epoch-mean training loss", title="y = 2x: alternating vs positive LR"
        )
        ax.axhline(SEED_LOSS, color="grey", lw=0.8, ls=":", label="seed claim 0.003")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return self.figure(fig, "loss", "Training loss per epoch; dashed: analytic full-batch alternation")


def _mean(xs: list[float]) -> float:
    good = [x for x in xs if math.isfinite(x)]
    return sum(good) / len(good) if good else math.nan


def _pair_factor(loss: list[float]) -> float:
    """Measured error factor per epoch pair from the full-batch loss at even epochs."""
    k = len(loss) - 2 if len(loss) % 2 == 0 else len(loss) - 1
    if k <= 0 or not loss[0] > 0 or not loss[k] > 0:
        return math.nan
    return (loss[k] / loss[0]) ** (1 / k)
