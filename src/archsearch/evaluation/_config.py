"""Training settings shared by every trainer, so they train children the same way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from archsearch import _limits as limits
from archsearch.errors import ArchsearchError, short


#: what early stopping may watch (``TrainConfig.monitor``)
MONITORS = ("score", "loss")


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
    speed, so it is off unless asked for. ``folds`` (default 1: the task's own validation split)
    scores a child by k-fold cross-validation on the training and validation rows together (see
    :mod:`archsearch.evaluation._folds`): k trainings per child, a reward that a small validation split
    cannot fool. ``monitor`` says what early stopping watches: ``"score"`` (default: validation
    accuracy or R^2, which must rise) or ``"loss"`` (the validation loss, which must fall, as Keras's
    ``EarlyStopping`` watches by default; accuracy moves in whole rows, and on a small split stays
    level while a network still improves). With ``"loss"`` a trial's ``val_loss`` is its loss at the
    kept epoch.

    Bounds: ``max_epochs`` and ``reward_window`` up to 10**5, ``patience`` up to 10**6, ``batch_size`` up to
    2**20, ``lr`` and ``weight_decay`` up to 10, ``reward_power`` up to 100, ``threads`` up to 256,
    ``time_limit`` up to 10**6 s, ``folds`` up to 100, all finite; ``device`` is ``cpu``, ``cuda`` or ``cuda:N`` of this
    machine.
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
    folds: int = 1
    monitor: str = "score"

    def __post_init__(self) -> None:
        def count(name: str, maximum: int, optional: bool = False) -> None:
            if not (optional and getattr(self, name) is None):
                object.__setattr__(self, name, limits.integer(f"trainer.{name}", getattr(self, name), 1, maximum))

        def rate(name: str, minimum: float, maximum: float, above: bool = True, optional: bool = False) -> None:
            if not (optional and getattr(self, name) is None):  # checked, kept as given: configs keep their bytes
                limits.real(f"trainer.{name}", getattr(self, name), minimum, maximum, above=above)

        count("max_epochs", limits.MAX_EPOCHS)
        count("patience", limits.MAX_COUNT)  # may exceed max_epochs (no early stop), as a refit's does
        rate("lr", 0.0, limits.MAX_RATE)
        count("batch_size", limits.MAX_BATCH_SIZE, optional=True)
        count("reward_window", limits.MAX_EPOCHS)
        rate("reward_power", 0.0, 100.0)
        limits.device("trainer.device", self.device)
        count("threads", limits.MAX_THREADS, optional=True)
        rate("time_limit", 0.0, limits.MAX_TIME_LIMIT, optional=True)
        rate("weight_decay", 0.0, limits.MAX_RATE, above=False)
        count("folds", limits.MAX_FOLDS)
        if self.monitor not in MONITORS:
            choices, given = ", ".join(MONITORS), short(repr(self.monitor))
            raise ArchsearchError(f"trainer.monitor: must be one of {choices}, got {given}")

    def to_config(self) -> dict[str, Any]:
        config = asdict(self)
        for name in ("weight_decay", "folds", "monitor"):  # studies written before they existed stay byte-identical
            if config[name] == _DEFAULTS[name]:
                del config[name]
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


_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
