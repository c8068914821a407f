"""What a spike can do to a run: drop the step's update, restore earlier training state, write a skip file.

- :func:`drop_update` makes the coming ``optimizer.step()`` a no-op by removing every gradient: torch optimizers
  leave a parameter without a gradient untouched, including its momentum, Adam moments, step count and weight
  decay, so the weights and the optimizer state after the step are bit-identical to those before it.
- :class:`TrainingState` holds copies of the model's parameters and buffers, the optimizers' per-parameter state
  and the AMP grad scaler's state, taken into buffers allocated once. It restores them bit for bit on the host
  (:meth:`~TrainingState.restore`), or selects between copy and live tensors on the device without reading a
  decision back (:meth:`~TrainingState.select`, :meth:`~TrainingState.keep_unless`).
- :class:`SpikeRecord` writes the batches to skip in Lightning's ``SpikeDetection`` format.
- :class:`Backoff` is the policy of the ``"backoff"`` reaction: how far a spike cuts the LR, its floor, and its
  recovery.
"""

from __future__ import annotations

import copy
import json
import math
import os
from typing import Any, Literal, get_args

import lightning.pytorch as pl
import torch

from lr_callbacks._checks import check_number

#: The named decays, as a ``Literal`` so that LightningCLI (jsonargparse) checks them when parsing.
DecayName = Literal["halve", "sqrt"]
DECAYS: dict[str, float] = dict(zip(get_args(DecayName), (0.5, math.sqrt(0.5))))


def decay_factor(decay: Any) -> float:
    """The factor of ``decay``: a name of :data:`DECAYS` or a float in ``(0, 1)``.

    Raises:
        ValueError: Naming ``decay`` and the allowed values.
    """
    if isinstance(decay, str) and decay in DECAYS:
        return DECAYS[decay]
    if isinstance(decay, (int, float)) and not isinstance(decay, bool) and 0.0 < decay < 1.0:
        return float(decay)
    raise ValueError(f"`decay` must be one of {list(DECAYS)} or a float in (0, 1), got {decay!r}.")


class Backoff:
    """The policy of the ``"backoff"`` reaction: at a spike every param group's spike scale ``s_g`` becomes
    ``max(s_g * decay, min_lr / |base_lr_g|)`` (never more than it was), from the next step on; after
    ``recovery_patience`` calm checks in a row it grows by ``recovery_factor``, capped at 1.

    Args:
        decay: ``"halve"`` (``* 0.5``), ``"sqrt"`` (``* sqrt(0.5)``), or a factor in ``(0, 1)``.
        min_lr: Floor on the LR magnitude the spike scale alone can reach, ``>= 0``.
        recovery_patience: Calm checks in a row before the scale grows back, ``>= 1``; ``None`` never recovers.
        recovery_factor: Growth of the scale on recovery, ``> 1``.

    Raises:
        ValueError: For a value out of its range; the message names the argument and what is allowed.

    Example:
        >>> Backoff(decay="sqrt", recovery_patience=50)
        Backoff(decay='sqrt', min_lr=1e-06, recovery_patience=50, recovery_factor=2.0)
        >>> round(Backoff(decay="sqrt").factor, 4)
        0.7071
    """

    DECAYS = DECAYS
    IDENTITY = ("decay", "min_lr", "recovery_patience", "recovery_factor")

    def __init__(
        self,
        decay: DecayName | float = "halve",
        min_lr: float = 1e-6,
        recovery_patience: int | None = None,
        recovery_factor: float = 2.0,
    ) -> None:
        self.factor = decay_factor(decay)
        self.decay = decay
        self.min_lr = check_number("min_lr", min_lr, ge=0)
        self.recovery_patience = (
            None
            if recovery_patience is None
            else check_number("recovery_patience", recovery_patience, ge=1, integer=True)
        )
        self.recovery_factor = check_number("recovery_factor", recovery_factor, gt=1)

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.IDENTITY)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and repr(other) == repr(self)

    def __hash__(self) -> int:
        return hash(repr(self))


def drop_update(optimizers: list[torch.optim.Optimizer]) -> None:
    """Remove every gradient so that the next ``step()`` of these optimizers changes nothing."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None


def grad_scaler(trainer: pl.Trainer) -> Any:
    """The precision plugin's ``GradScaler`` (``precision="16-mixed"``), or ``None``."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


class TrainingState:
    """A copy of the training state that a spike can fall back to.

    It covers the LightningModule's ``state_dict`` (parameters and buffers), every optimizer's per-parameter
    state (momentum buffers, Adam moments and step counts) and the grad scaler's state under ``"16-mixed"``.
    The copy tensors are allocated on first use and refilled in place afterwards; they live beside the live
    tensors (on the model's device). ``step`` is the optimizer-step index the copy was taken before.
    """

    def __init__(self) -> None:
        self.model: dict[str, torch.Tensor] = {}
        self.optimizers: list[list[dict[str, Any] | None]] = []
        self.scaler: dict[str, Any] | None = None
        self.step = 0
        self._names: list[str] = []
        self._live_model: list[torch.Tensor] | None = None
        self._flat: list[torch.Tensor] | None = None
        self._flat_for: list[torch.Tensor] | None = None
        self._live: list[torch.Tensor] | None = None
        self._states: list[tuple[dict[Any, Any], int]] = []  # each optimizer's state dict and its size
        self._python_state = False
        self._scaler = True

    # --- host path -------------------------------------------------------------------------------------

    def forget_live(self) -> None:
        """Look the live tensors up again at the next capture (a new fit may hold new ones)."""
        self._live_model = None
        self._live = None
        self._states = []
        self._flat_for = None

    def _model_tensors(self, trainer: pl.Trainer) -> list[torch.Tensor]:
        if self._live_model is None:
            live = trainer.lightning_module.state_dict(keep_vars=True)
            self._names = list(live)
            self._live_model = [t.detach() for t in live.values()]
        return self._live_model

    def capture(self, trainer: pl.Trainer, step: int) -> None:
        """Copy the live state into this one: one ``_foreach_copy_`` while the structure is unchanged."""
        live = self.live_tensors(trainer)
        flat = self._flat
        if flat is not None and (
            live is self._flat_for
            or (
                len(flat) == len(live)
                and all(c.shape == t.shape and c.dtype == t.dtype and c.device == t.device for c, t in zip(flat, live))
            )
        ):
            torch._foreach_copy_(flat, live)
            if self._python_state:
                self._copy_python_state(trainer)
        else:
            self._capture_anew(trainer, live)
        self._flat_for = live
        if self._scaler:
            scaler = grad_scaler(trainer)
            self.scaler = scaler.state_dict() if scaler is not None else None
        self.step = step

    def _capture_anew(self, trainer: pl.Trainer, live: list[torch.Tensor]) -> None:
        self.model = {k: t.clone() for k, t in zip(self._names, live)}
        self.optimizers = [
            [None if (state := opt.state.get(p)) is None else self._copy_state(state) for p in _params(opt)]
            for opt in trainer.optimizers
        ]
        self._flat = self.copies()
        self._python_state = any(
            not isinstance(v, torch.Tensor) for states in self.optimizers for st in states for v in (st or {}).values()
        )
        self._scaler = grad_scaler(trainer) is not None

    def _copy_python_state(self, trainer: pl.Trainer) -> None:
        for opt, states in zip(trainer.optimizers, self.optimizers):
            for p, state in zip(_params(opt), states):
                for k, v in (opt.state.get(p) or {}).items():
                    if state is not None and not isinstance(v, torch.Tensor):
                        state[k] = copy.deepcopy(v)

    def restore(self, trainer: pl.Trainer) -> None:
        """Write this copy back into the live model, optimizers and scaler, bit for bit."""
        live = trainer.lightning_module.state_dict(keep_vars=True)
        with torch.no_grad():
            for name, value in self.model.items():
                live[name].copy_(value)
        for opt, states in zip(trainer.optimizers, self.optimizers):
            for p, state in zip(_params(opt), states):
                if state is None:
                    opt.state.pop(p, None)
                    continue
                current = opt.state.get(p)
                opt.state[p] = {k: self._put(v, current.get(k) if current else None, p) for k, v in state.items()}
        scaler = grad_scaler(trainer)
        if scaler is not None and self.scaler is not None:
            scaler.load_state_dict(self.scaler)

    @staticmethod
    def _copy_state(state: dict[str, Any]) -> dict[str, Any]:
        return {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in state.items()}

    @staticmethod
    def _put(value: Any, current: Any, p: torch.Tensor) -> Any:
        if not isinstance(value, torch.Tensor):
            return copy.deepcopy(value)
        if isinstance(current, torch.Tensor) and current.shape == value.shape and current.dtype == value.dtype:
            return current.copy_(value)
        # Adam's "step" stays where torch keeps it; other state tensors follow the parameter.
        return value.clone() if value.dim() == 0 else value.clone().to(p.device)

    # --- device path -----------------------------------------------------------------------------------

    def live_tensors(self, trainer: pl.Trainer) -> list[torch.Tensor]:
        """Every live tensor this state covers, in the order of :meth:`copies`.

        The list is looked up again when an optimizer's state dict is replaced (``load_state_dict``) or gains
        entries; otherwise its tensors are the ones torch optimizers update in place.
        """
        optimizers = trainer.optimizers
        live = self._live
        if live is not None and len(optimizers) == len(self._states):
            for opt, (state, size) in zip(optimizers, self._states):
                if opt.state is not state or len(state) != size:
                    break
            else:
                return live
        out = list(self._model_tensors(trainer))
        for opt in optimizers:
            for p in _params(opt):
                out.extend(v for _, v in sorted((opt.state.get(p) or {}).items()) if isinstance(v, torch.Tensor))
        self._live, self._states = out, [(opt.state, len(opt.state)) for opt in optimizers]
        return out

    def copies(self) -> list[torch.Tensor]:
        """This state's tensors, in the order of :meth:`live_tensors`."""
        out = list(self.model.values())
        for states in self.optimizers:
            for state in states:
                out.extend(v for _, v in sorted((state or {}).items()) if isinstance(v, torch.Tensor))
        return out

    def matches(self, live: list[torch.Tensor]) -> bool:
        """Whether this copy has the structure of ``live`` (it may need a fresh :meth:`capture` otherwise)."""
        copies = self.copies()
        return len(copies) == len(live) and all(
            c.shape == t.shape and c.dtype == t.dtype and c.device == t.device for c, t in zip(copies, live)
        )

    def keep_unless(self, live: list[torch.Tensor], flag: torch.Tensor) -> None:
        """On the device: this copy takes the live values where ``flag`` is false; no host read."""
        for c, t in zip(self.copies(), live):
            torch.where(flag, c, t, out=c)

    def select(self, live: list[torch.Tensor], flag: torch.Tensor) -> None:
        """On the device: the live tensors take this copy's values where ``flag`` is true; no host read."""
        for c, t in zip(self.copies(), live):
            torch.where(flag, c, t, out=t)

    @staticmethod
    def device_ready(trainer: pl.Trainer, live: list[torch.Tensor], device: torch.device) -> bool:
        """Whether every covered value is a tensor on ``device``, so that a device-side select can cover it.

        Not so, e.g., for Adam's ``step`` counters, which torch keeps on the CPU unless ``capturable=True`` or
        ``fused=True``.
        """
        for opt in trainer.optimizers:
            for p in _params(opt):
                if any(not isinstance(v, torch.Tensor) for v in (opt.state.get(p) or {}).values()):
                    return False
        return all(t.device == device for t in live)

    # --- checkpoint --------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """A detached copy (the buffers here are refilled in place at every capture)."""
        return copy.deepcopy(
            {"model": self.model, "optimizers": self.optimizers, "scaler": self.scaler, "step": self.step}
        )

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TrainingState:
        out = cls()
        out.model = dict(state.get("model", {}))
        out.optimizers = [list(states) for states in state.get("optimizers", [])]
        out.scaler = state.get("scaler")
        out.step = int(state.get("step", 0))
        out._flat = out.copies()
        out._python_state = True
        return out


class SpikeRecord:
    """The batches a restart should skip, in the file format of Lightning's ``SpikeDetection``.

    ``skip_batches.json`` (or ``path``) holds a JSON list of batch indices, each the index within its epoch, as
    Lightning's callback writes it. ``<stem>_steps.json`` beside it lists one object per spike with the optimizer
    step, epoch, batch indices, monitored value and the reactions taken.
    """

    FILENAME = "skip_batches.json"

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.bad_batches: list[int] = []
        self.entries: list[dict[str, Any]] = []

    def resolve(self, default_root_dir: str) -> None:
        path = self.path or default_root_dir
        if not str(path).endswith(".json"):
            path = os.path.join(path, self.FILENAME)
        self.path = str(path)

    @property
    def steps_path(self) -> str:
        return self._path()[: -len(".json")] + "_steps.json"

    def _path(self) -> str:
        if self.path is None:
            raise RuntimeError("SpikeRecord has no file yet: it is chosen at fit start (`resolve`).")
        return self.path

    def add(self, entry: dict[str, Any], batches: list[int], write: bool) -> None:
        self.entries.append(entry)
        self.bad_batches.extend(b for b in batches if b >= 0)
        if write:
            self.write()

    def write(self) -> None:
        path = self._path()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(self.bad_batches, f, indent=4)
        with open(self.steps_path, "w") as f:
            json.dump(self.entries, f, indent=4)

    def state_dict(self) -> dict[str, Any]:
        return {"bad_batches": list(self.bad_batches), "entries": list(self.entries)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad_batches = list(state.get("bad_batches", self.bad_batches))
        self.entries = list(state.get("entries", self.entries))
