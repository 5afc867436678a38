"""Learning-rate schedules stepped once per epoch, with ``torch.optim.lr_scheduler``'s names
and values.

Each schedule is stateless: ``schedule.lr(base_lr, epoch)`` gives the learning rate of the
1-based ``epoch`` in closed form, which is what torch's scheduler gives in that epoch when
stepped once at the end of each (epoch 1 runs at ``base_lr``). A resumed run gets its lr
from the epoch number alone; ``Trainer(..., lr_schedule=...)`` sets ``optimizer.lr`` from it
before each epoch.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from typing import Protocol

from xpnet.checks import bad_argument, is_integer, is_real, require_count


class Schedule(Protocol):
    """What :class:`~xpnet.training.Trainer` takes as ``lr_schedule``."""

    def lr(self, base_lr: float, epoch: int) -> float:
        """The learning rate of the 1-based ``epoch`` for a run whose lr is ``base_lr``."""
        ...


def _require_positive(name: str, value: object) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number > 0."""
    if not (is_real(value) and 0 < value < math.inf):
        raise bad_argument(is_real(value))(f"{name} must be a number > 0, got {value!r}")


class StepLR:
    """``base_lr * gamma ** ((epoch - 1) // step_size)``: ``gamma`` times smaller every
    ``step_size`` epochs (torch's ``StepLR``)."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        require_count("step_size", step_size, 1)
        _require_positive("gamma", gamma)
        self.step_size, self.gamma = step_size, gamma

    def lr(self, base_lr: float, epoch: int) -> float:
        """The learning rate of the 1-based ``epoch``."""
        return base_lr * self.gamma ** ((epoch - 1) // self.step_size)

    def __repr__(self) -> str:
        return f"StepLR(step_size={self.step_size}, gamma={self.gamma})"


class MultiStepLR:
    """``gamma`` times smaller after each of the epochs ``milestones`` (increasing positive
    integers): epoch ``m + 1`` is the first at the new rate (torch's ``MultiStepLR``)."""

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1) -> None:
        milestones = list(milestones)
        if not (
            milestones
            and all(is_integer(m) and m >= 1 for m in milestones)
            and all(a < b for a, b in itertools.pairwise(milestones))
        ):
            raise ValueError(f"milestones must be increasing positive integers, got {milestones!r}")
        _require_positive("gamma", gamma)
        self.milestones, self.gamma = milestones, gamma

    def lr(self, base_lr: float, epoch: int) -> float:
        """The learning rate of the 1-based ``epoch``."""
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch - 1)

    def __repr__(self) -> str:
        return f"MultiStepLR(milestones={self.milestones}, gamma={self.gamma})"


class ExponentialLR:
    """``base_lr * gamma ** (epoch - 1)`` (torch's ``ExponentialLR``)."""

    def __init__(self, gamma: float) -> None:
        _require_positive("gamma", gamma)
        self.gamma = gamma

    def lr(self, base_lr: float, epoch: int) -> float:
        """The learning rate of the 1-based ``epoch``."""
        return base_lr * self.gamma ** (epoch - 1)

    def __repr__(self) -> str:
        return f"ExponentialLR(gamma={self.gamma})"


class CosineAnnealingLR:
    """Half a cosine from ``base_lr`` (epoch 1) down to ``eta_min`` (epoch ``t_max + 1``),
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * (epoch - 1) / t_max)) / 2``; past it
    the cosine goes on, back up, as torch's ``CosineAnnealingLR`` does."""

    def __init__(self, t_max: int, eta_min: float = 0.0) -> None:
        require_count("t_max", t_max, 1)
        if not (is_real(eta_min) and 0 <= eta_min < math.inf):
            raise bad_argument(is_real(eta_min))(f"eta_min must be a number >= 0, got {eta_min!r}")
        self.t_max, self.eta_min = t_max, eta_min

    def lr(self, base_lr: float, epoch: int) -> float:
        """The learning rate of the 1-based ``epoch``."""
        cosine = (1 + math.cos(math.pi * (epoch - 1) / self.t_max)) / 2
        return self.eta_min + (base_lr - self.eta_min) * cosine

    def __repr__(self) -> str:
        return f"CosineAnnealingLR(t_max={self.t_max}, eta_min={self.eta_min})"
