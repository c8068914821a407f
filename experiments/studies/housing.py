"""Seed 001: fixed, step-decay and spike-adaptive LRs for linear regression on California Housing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from experiments.report import Figure, Section, Table, num
from experiments.studies.base import Study, by_row, commands, failures, verdict
from experiments.studies.runner import Run, RunResult

#: the seed notebook's own printed results (its numpy code, this split), and OLS on the same split
SEED_RMSE = {"fixed LR 0.01": 0.7608, "step decay": 0.7462, "spike-adaptive (halve)": 0.7466}
OLS_RMSE = 0.745581
SEED_NUMPY_SECONDS = 20.0  # the seed's numpy code for its three models, timed on this machine
TOLERANCE = 0.005  # test RMSE agrees with the seed's when within this


@dataclass
class HousingParams:
    epochs: int = 1000
    step_size: int = 250
    window: int = 200
    seeds: list[int] = field(default_factory=lambda: [42])


def final_lr(metrics: dict[str, float], objects: dict[str, Any]) -> dict[str, float]:
    """The LR after the last epoch's decision (the seed's ``lr_history[-1]``) and the spike count."""
    out = {"final/lr": float(objects["trainer"].optimizers[0].param_groups[0]["lr"])}
    for cb in objects["callbacks"]:
        if type(cb).__name__ == "SpikeAdaptiveLR":
            out["spikes"] = float(len(cb.spikes))
    return out


def ols_rmse(data_home: str | None) -> tuple[float, float]:
    """Test RMSE of ordinary least squares on the seed split (the floor SGD approaches), and the stable-LR
    limit ``2 / (2·|row|²/32)`` of a batch of 32 that holds the training row of largest norm."""
    import numpy as np
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from experiments.data.housing import load_housing_arrays

    x, y = load_housing_arrays(data_home)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=42)
    scaler = StandardScaler().fit(x_tr)
    a_tr = np.c_[scaler.transform(x_tr), np.ones(len(x_tr))]
    a_te = np.c_[scaler.transform(x_te), np.ones(len(x_te))]
    coef, *_ = np.linalg.lstsq(a_tr, y_tr, rcond=None)
    return float(np.sqrt(np.mean((a_te @ coef - y_te) ** 2))), float(32 / (a_tr**2).sum(1).max())


class HousingStudy(Study):
    Params = HousingParams
    key = "housing"
    title = "California Housing: fixed, step-decay and spike-adaptive LR"
    source = "seed 001 (adaptive learning rate as a dynamic parameter)"

    def rows(self) -> dict[str, list[str]]:
        p = self.params
        return {
            "fixed LR 0.01": ["experiment=study_housing", "optimizer.lr=0.01"],
            "step decay": [
                "experiment=study_housing_step",
                "optimizer.lr=0.01",
                f"callbacks.step_decay.step_size={p['step_size']}",
            ],
            "spike-adaptive (halve)": [
                "experiment=study_housing_spike",
                "optimizer.lr=0.1",
                "callbacks.spike_adaptive.decay=halve",
            ],
            "spike-adaptive (sqrt)": [
                "experiment=study_housing_spike",
                "optimizer.lr=0.1",
                "callbacks.spike_adaptive.decay=sqrt",
            ],
        }

    def plan(self) -> list[Run]:
        from experiments.data.housing import load_housing_arrays

        load_housing_arrays(self.ctx.data_home)  # fails here, with the way to provide the data, if missing
        p = self.params
        common = [f"trainer.max_epochs={p['epochs']}", f"trainer.check_val_every_n_epoch={max(1, p['epochs'] // 20)}"]
        if self.ctx.data_home:
            common.append(f"data.data_home={self.ctx.data_home}")
        runs = []
        for i, (row, overrides) in enumerate(self.rows().items()):
            for seed in p["seeds"]:
                slug = row.split(" ")[0].replace("-", "_") + (
                    "" if "(" not in row else "_" + row.split("(")[1].rstrip(")")
                )
                runs.append(Run(f"{slug}/seed{seed}", [*overrides, *common, f"seed={seed}"], row=row, post=final_lr))
        return runs

    def analyse(self, results: list[RunResult]) -> Section:
        p = self.params
        rows = by_row(results)
        window = min(p["window"], p["epochs"])
        ols, batch_bound = ols_rmse(self.ctx.data_home)
        main, measured = [], {}
        for row, rs in rows.items():
            r = next((x for x in rs if x.ok), None)
            if r is None:
                main.append([row, num(SEED_RMSE.get(row)), "failed", "—", "—", "—", "—", "—", "—"])
                continue
            loss = r.history.get("train/loss", [])
            red = (loss[0] - loss[window - 1]) / loss[0] if len(loss) >= window and loss[0] else math.nan
            rmse = r.get("test/rmse")
            peak = max((x for x in loss if math.isfinite(x)), default=math.nan)
            measured[row] = {
                "rmse": rmse,
                "lr": r.get("final/lr"),
                "reduction": red,
                "seconds": r.seconds,
                "peak": peak,
                "peak_epoch": loss.index(peak) if math.isfinite(peak) else -1,
                "spikes": r.get("spikes"),
                "first": loss[0] if loss else math.nan,
            }
            seed_value = SEED_RMSE.get(row)
            if seed_value is None:
                v = "extra"
            elif p["epochs"] < 1000:
                v = "n/a (short run)"
            else:
                v = verdict(abs(rmse - seed_value) <= TOLERANCE if math.isfinite(rmse) else False)
            spikes = r.get("spikes")
            main.append(
                [
                    row,
                    num(seed_value) if seed_value else "—",
                    num(rmse),
                    v,
                    num(r.get("final/lr"), 4),
                    num(red, 3),
                    num(peak, 3),
                    num(spikes, 3) if math.isfinite(spikes) else "—",
                    f"{r.seconds:.0f}",
                ]
            )
        analysis = self._analysis(measured, ols, batch_bound, p, window)
        figs = [self._figure(rows, window)] if measured else []
        return self.section(
            tables=[
                Table(
                    f"Test RMSE after {p['epochs']} epochs (seed split, 4128 test rows), final LR, and loss reduction "
                    f"(L_0 − L_{window - 1}) / L_0 of the epoch-mean training loss over the first {window} epochs",
                    [
                        "method",
                        "seed's RMSE",
                        "measured RMSE",
                        "verdict",
                        "final LR",
                        f"reduction, first {window} ep.",
                        "highest epoch loss",
                        "spikes",
                        "wall s",
                    ],
                    main,
                ),
                Table(
                    "References on the same split",
                    ["reference", "value"],
                    [
                        ["OLS test RMSE (README of the data)", num(OLS_RMSE, 6)],
                        ["OLS test RMSE (computed here)", num(ols, 6)],
                        ["seed's numpy code, its three models (wall s, this machine)", f"~{SEED_NUMPY_SECONDS:.0f}"],
                        [
                            "ours, four models (sum of run wall times, s)",
                            f"{sum(m['seconds'] for m in measured.values()):.0f}",
                        ],
                    ],
                ),
            ],
            figures=figs,
            analysis=analysis,
            settings=[
                "train_test_split(test_size=0.2, random_state=42), StandardScaler fitted on the training part; "
                "Linear(8, 1), weights ~ N(0, 0.01²), bias 0; MSE; plain SGD, batch 32 (516 steps per epoch), "
                "reshuffled every epoch.",
                f"Fixed: η = 0.01. Step decay: η = 0.01 × 0.5^⌊epoch/{p['step_size']}⌋ (StepDecay). "
                "Spike-adaptive: η starts at 0.1; SpikeAdaptiveLR(threshold=1.1) multiplies it by 0.5 (halve) or "
                "√0.5 (sqrt) after an epoch whose mean training loss exceeds 1.1× the previous epoch's, from the "
                "next epoch on, floor 1e-6.",
                f"{p['epochs']} epochs, seed(s) {list(p['seeds'])} (data order; the seed's numpy RNG stream cannot "
                "be matched).",
                f"Test RMSE agrees with the seed's own result when within ±{TOLERANCE}.",
            ],
            commands=commands([r.run for r in results]),
            error=failures(results),
        )

    @staticmethod
    def _analysis(m: dict[str, dict[str, float]], ols: float, batch_bound: float, p: Any, window: int) -> list[str]:
        if not m:
            return []
        rm = {k: v["rmse"] for k, v in m.items()}
        text = ["Test RMSE: " + ", ".join(f"{k} {num(v)}" for k, v in rm.items()) + f"; OLS floor {num(ols)}."]
        fixed, step = m.get("fixed LR 0.01"), m.get("step decay")
        decayed = [v["rmse"] - ols for k, v in m.items() if k != "fixed LR 0.01" and math.isfinite(v["rmse"])]
        if fixed and math.isfinite(fixed["rmse"]) and decayed:
            seed_gap = SEED_RMSE["fixed LR 0.01"] - OLS_RMSE
            text.append(
                f"Against OLS, fixed η = 0.01 ends at {fixed['rmse'] - ols:+.4f} here and at {seed_gap:+.4f} in the "
                "seed's run. At a constant η with batch 32 the last iterate keeps moving around the minimum with the "
                "gradient noise, so its test RMSE is a random draw of about that size on either side of the OLS value "
                "(the test RMSE is not what OLS minimises, so a draw can land below it); the seed's 0.7608 and our "
                "value are two such draws, and the verdict on this row says no more than that. The rows whose η "
                f"shrinks late end within {max(abs(d) for d in decayed):.4f} of OLS."
            )
        for name in ("spike-adaptive (halve)", "spike-adaptive (sqrt)"):
            a = m.get(name)
            if not a or not math.isfinite(a["peak"]):
                continue
            blew_up = a["peak"] > 100 * a["first"]
            text.append(
                f"{name}: the epoch loss peaks at {num(a['peak'], 3)} in epoch {a['peak_epoch']} "
                + (
                    f"(the first epoch's is {num(a['first'], 3)}): at η = 0.1 mini-batch SGD diverges, although 0.1 is "
                    "below the full-batch bound 2/λ_max ≈ 0.49 (tutorial section). Rows with extreme standardised "
                    "features (average occupancy up to 107 standard deviations) give single batches a curvature far "
                    "above the full-batch one, and each such batch multiplies the error along that feature. "
                    f"The rule then cuts η at every spike ({num(a['spikes'], 2)} spikes, final η {num(a['lr'], 3)}, "
                    f"next to the {num(batch_bound, 2)} at which a batch holding the most extreme row becomes stable) "
                    "and the weights walk back from the blow-up. "
                    if blew_up
                    else "without a blow-up. "
                )
                + (
                    f"After {p['epochs']} epochs it ends at test RMSE {num(a['rmse'])}."
                    if math.isfinite(a["rmse"])
                    else "Its test RMSE is not finite."
                )
            )
        blown = [k for k, v in m.items() if k.startswith("spike") and v["peak"] > 100 * v["first"]]
        if blown:
            a = m[blown[0]]
            text.append(
                "So the seed's adaptive result (0.7466; the seed's numpy loop, re-run on this split, blows up the same "
                "way before it recovers to that value) is a recovery from a divergence, not a smoother descent: "
                "'adaptive LR may converge faster by starting high' is contradicted by its own run. The early "
                f"loss reduction (L_0 − L_{window - 1}) / L_0 = {num(a['reduction'], 3)} of {blown[0]} "
                + (
                    "looks like the fastest start only because L_0, the mean of the first epoch, is already "
                    f"{num(a['first'], 3)}."
                    if a["reduction"] > 0
                    else "is negative: the loss is still above the blown-up first epoch's."
                )
            )
        if fixed and step and fixed["reduction"] == step["reduction"] and p["step_size"] >= window:
            text.append(
                f"Fixed and step decay have the same early reduction: their η is the same for the first "
                f"{p['step_size']} epochs and the runs share the data order."
            )
        text.append(
            "The loss-reduction measure compares epoch means; L_0 is the mean over the first epoch's 516 updates. Our "
            "epoch-mean losses are measured before each update, the seed's after it; the spike rule compares epoch "
            "means in both."
        )
        if p["epochs"] < 1000:
            text.append(
                f"This profile runs {p['epochs']} epochs instead of the seed's 1000, so the RMSEs are not comparable "
                "with the seed's and the verdicts are left out."
            )
        return text

    def _figure(self, rows: dict[str, list[RunResult]], window: int) -> Figure:
        import matplotlib.pyplot as plt

        from experiments.figures import bar_chart, plot_series

        fig, axes = plt.subplots(2, 2, figsize=(14, 9))
        names, rmses, reds = [], [], []
        for row, rs in rows.items():
            r = next((x for x in rs if x.ok), None)
            if r is None:
                continue
            loss, lr = r.history.get("train/loss", []), r.history.get("lr", [])
            plot_series(axes[0, 0], loss, label=row, lw=1.5)
            plot_series(axes[0, 1], lr, label=row, lw=1.5)
            names.append(row)
            rmses.append(r.get("test/rmse"))
            reds.append((loss[0] - loss[window - 1]) / loss[0] if len(loss) >= window else math.nan)
        axes[0, 0].set(xlabel="epoch", ylabel="MSE (epoch mean)", yscale="log", title="Training loss (log scale)")
        axes[0, 0].legend()
        axes[0, 1].set(xlabel="epoch", ylabel="learning rate", yscale="log", title="Learning rate (log scale)")
        axes[0, 1].legend()
        colors = ["skyblue", "lightcoral", "lightgreen", "khaki"][: len(names)]
        scale = bar_chart(
            axes[1, 0], names, rmses, colors, fmt=lambda v: num(v, 4), reference=(OLS_RMSE, f"OLS {OLS_RMSE:.4f}")
        )
        axes[1, 0].set(ylabel="test RMSE", title="Test RMSE" + (f" ({scale} scale)" if scale != "linear" else ""))
        axes[1, 0].legend()
        scale = bar_chart(axes[1, 1], names, reds, colors, fmt=lambda v: num(v, 3))
        axes[1, 1].axhline(0, color="black", lw=0.8)
        axes[1, 1].set(ylabel=f"(L_0 − L_{window - 1}) / L_0", title=f"Loss reduction, first {window} epochs"
                       + (f" ({scale} scale; negative: the loss grew)" if scale != "linear" else ""))  # fmt: skip
        for ax in axes[1]:
            ax.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        return self.figure(fig, "four_panel", "Seed 001's four panels: loss, LR (log scale), test RMSE, early loss "
                           "reduction; each bar carries its value, and a scale that spans decades is "
                           "logarithmic")  # fmt: skip
