"""Training settings shared by every trainer, so they train children the same way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from archsearch.errors import ArchsearchError


@dataclass(frozen=True)
class TrainConfig:
    """How a child is trained and scored.

    Adam with learning rate ``lr`` (and ``weight_decay``, an L2 penalty added to the gradients as
    ``torch.optim.Adam`` does; default none), full batch unless ``batch_size`` is given,
    at most ``max_epochs`` epochs, stopping once validation accuracy has not
    improved for ``patience`` epochs. The reward is
    ``max(validation accuracy of the last reward_window epochs) ** reward_power``
    (Zoph & Le 2017 use the cube of the best of the last five epochs). ``threads`` is how many
    CPU cores training uses: the batched trainer trains groups of children side by side in that
    many worker processes (default: all cores once a batch's modelled work pays for starting
    them), the serial trainer runs PyTorch on that many threads (default 1). It never changes an
    MLP's results; a CNN's convolutions may round differently on another number of threads, which
    is one reason a study stores it (every executor then trains with it). ``time_limit`` (seconds, default none) bounds one child's training: a child that
    reaches it stops after the minibatch in progress, is validated, and is recorded with what it
    reached (its curves show the epochs it completed). It makes results depend on the machine's
    speed, so it is off unless asked for.
    """

    max_epochs: int = 50
    patience: int = 10
    lr: float = 0.01
    batch_size: int | None = None
    reward_window: int = 5
    reward_power: float = 3.0
    device: str = "cpu"
    threads: int | None = None
    time_limit: float | None = None
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ArchsearchError(f"trainer.{name}: {what}, got {getattr(self, name)!r}")

        need(isinstance(self.max_epochs, int) and self.max_epochs >= 1, "max_epochs", "must be an integer >= 1")
        need(isinstance(self.patience, int) and self.patience >= 1, "patience", "must be an integer >= 1")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.batch_size is None or self.batch_size >= 1, "batch_size", "must be >= 1 or omitted for full batch")
        need(isinstance(self.reward_window, int) and self.reward_window >= 1, "reward_window", "must be >= 1")
        need(self.reward_power > 0, "reward_power", "must be > 0")
        need(
            self.threads is None or (isinstance(self.threads, int) and self.threads >= 1),
            "threads",
            "must be an integer >= 1",
        )
        need(self.time_limit is None or self.time_limit > 0, "time_limit", "must be > 0 seconds or omitted")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")

    def to_config(self) -> dict[str, Any]:
        config = asdict(self)
        if not self.weight_decay:  # studies written before it existed stay byte-identical in config
            del config["weight_decay"]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ArchsearchError(f"trainer: unknown setting {unknown[0]!r}")
        return cls(**config)

    def reward(self, val_curve: list[float]) -> tuple[float, float, int]:
        """``(reward, accuracy, epoch)`` from a validation curve.

        ``accuracy`` is the best of the last ``reward_window`` epochs and ``epoch``
        (1-based) the first epoch of that window to reach it: the epoch whose
        weights a trainer keeps.
        """
        start = max(0, len(val_curve) - self.reward_window)
        window = val_curve[start:]
        accuracy = max(window)
        epoch = start + window.index(accuracy) + 1
        return accuracy**self.reward_power, accuracy, epoch
