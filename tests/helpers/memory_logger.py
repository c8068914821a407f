"""A logger that keeps every call in memory, to compare what two runs logged."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import Logger


class MemoryLogger(Logger):
    """Keeps every ``log_metrics`` call as ``(step, metrics)``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((step, dict(metrics)))

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        pass


def lr_logs(logger: MemoryLogger) -> dict[int, list[dict[str, float]]]:
    """The logger's LR calls by step, in order: ``{step: [{"lr-...": lr, ...}, ...]}``."""
    by_step: dict[int, list[dict[str, float]]] = {}
    for step, metrics in logger.calls:
        lrs = {k: v for k, v in metrics.items() if k.startswith("lr-")}
        if lrs:
            assert step is not None
            by_step.setdefault(step, []).append(lrs)
    return by_step
