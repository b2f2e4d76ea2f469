"""The validation every config dataclass runs in its `__post_init__`.

A config lists its conditions with the message each one gives when it does
not hold, in the order they are checked:

  def __post_init__(self):
    checks = (
        (self.epochs >= 1, f"epochs={self.epochs} must be >= 1"),
        (self.optimizer in OPTIMIZERS,
         f"optimizer='{self.optimizer}' is not one of {OPTIMIZERS}"),
    )
    config_checks.require(checks, "TrainConfig")

This module imports nothing of akd_tf, so every module may use it.

Public names: require.
"""

from typing import Iterable, Tuple

__all__ = ["require"]


def require(checks: Iterable[Tuple[bool, str]], owner: str = "") -> None:
  """Raises on the first (ok, message) of `checks` whose ok is false.

  Args:
    checks: (condition, message when it is false) pairs, in order.
    owner: Prefixes the message as '<owner>: <message>' when given (the
      config's class name).

  Raises:
    ValueError: a condition is false; the message is that check's.
  """
  for ok, message in checks:
    if not ok:
      raise ValueError(f"{owner}: {message}" if owner else message)
