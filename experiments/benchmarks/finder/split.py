"""Which finder tasks are development tasks (finder choices may be tuned on them) and which evaluate.

:data:`DEV` holds the 56 tasks of the first four parts (:data:`experiments.benchmarks.finder.tasks.FIRST_TASKS`),
each of which was an evaluation part once and joined development after its figures were seen; :data:`EVAL` is the
fifth part (:mod:`experiments.benchmarks.finder.fifth_part`), 16 tasks written, and their file's SHA-256 recorded,
before anything ran on them. The schedule pairings (cosine, one-cycle) are developed on :data:`SCHEDULE_DEV`, 16 of
the development tasks chosen before any schedule was run, and evaluated on the same :data:`EVAL` as the constant LR.

>>> len(DEV), len(EVAL), len(SCHEDULE_DEV), set(SCHEDULE_DEV) <= set(DEV)
(56, 16, 16, True)
"""

from __future__ import annotations

from experiments.benchmarks.finder.fifth_part import FIFTH_PART
from experiments.benchmarks.finder.tasks import (
    FIRST_DEV,
    FIRST_EVAL,
    FIRST_TASKS,
    FOURTH_EVAL,
    SECOND_EVAL,
    THIRD_EVAL,
    FinderTask,
)

FIFTH_PART_SHA256 = "f9eca077709a6b3adc42bb74dd00c1413dcfe8aa41d34e54a855a06ebfec99aa"
"""The SHA-256 of ``fifth_part.py`` when it was committed, before anything ran on its tasks: a test holds it."""
TASKS: dict[str, FinderTask] = {**FIRST_TASKS, **{task.name: task for task in FIFTH_PART}}
"""Every task of the benchmark, by name."""
DEV: tuple[str, ...] = FIRST_DEV + FIRST_EVAL + SECOND_EVAL + THIRD_EVAL + FOURTH_EVAL
"""Finder choices (windows, divisors, factors, candidate counts, exponents) may be tuned on these tasks only."""
EVAL: tuple[str, ...] = tuple(task.name for task in FIFTH_PART)
"""Out-of-sample tasks: they measure, nothing is tuned on them."""
SCHEDULE_DEV: tuple[str, ...] = (
    "linear_unnormalised_sgd",
    "mlp_tanh_momentum",
    "cnn_bars_adam",
    "logistic_unnormalised_adamw",
    "housing_linear_sgd",
    "cnn_shapes_nesterov",
    "bn_mlp_xor_adamw",
    "autoencoder_bce_rmsprop",
    "logistic_momentum_b8",
    "softmax_regression_sgd",
    "linear_regression_adam",
    "logistic_fullbatch_gd",
    "attention_first_last_rmsprop",
    "attention_indexed_adamw",
    "deep_narrow_tanh_sgd",
    "gru_rising_nesterov",
)
"""The development tasks of the cosine and one-cycle pairings: every optimizer, loss and kind of input, and the
tasks the issue names (housing with plain SGD, where the race diverged; the attention and deep tanh tasks, where
the budget factor took good race winners 3-10x too low)."""
