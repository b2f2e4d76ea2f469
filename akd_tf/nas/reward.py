"""Rewards that trade accuracy against latency (MnasNet, TuNAS).

  mnas_reward      ACC * (LAT / T) ** w, w = alpha if LAT <= T else beta
                   (MnasNet). Soft constraint: alpha = beta = -0.07; hard
                   constraint: alpha = 0, beta = -1.
  absolute_reward  ACC + beta * |LAT / T - 1|, beta < 0 (TuNAS): penalizes
                   latency on both sides of the target, so the search does not
                   drift to ever smaller models.
  compute_reward   the reward a `RewardConfig` describes; None for a failed
                   candidate (no accuracy or no latency). A failure has no
                   reward: the controller gives it a penalty relative to the
                   rewards it has seen (`controller.ReinforceController`),
                   not an absolute 0, which would sit below every real
                   reward and drag the REINFORCE baseline down.

All functions are pure; accuracy is a fraction in [0, 1] and latencies are
in milliseconds.

Public names: RewardConfig, compute_reward, mnas_reward, absolute_reward,
REWARD_KINDS, SOFT_EXPONENT.
"""

import dataclasses
import math
from typing import Optional

__all__ = ["REWARD_KINDS", "RewardConfig", "SOFT_EXPONENT", "absolute_reward",
           "compute_reward", "mnas_reward"]

REWARD_KINDS = ("soft", "hard", "mnas", "abs")
SOFT_EXPONENT = -0.07
# (alpha, beta) of each kind; None: must be given.
_DEFAULTS = {
    "soft": (SOFT_EXPONENT, SOFT_EXPONENT),
    "hard": (0.0, -1.0),
    "mnas": (None, None),
    "abs": (None, SOFT_EXPONENT),
}


def _check(accuracy: float, latency_ms: float, target_ms: float) -> None:
  if not math.isfinite(target_ms) or target_ms <= 0:
    raise ValueError(f"latency target {target_ms!r} ms must be a positive "
                     "number (--target_ms)")
  if not math.isfinite(latency_ms) or latency_ms <= 0:
    raise ValueError(f"latency {latency_ms!r} ms must be a positive number")
  if not math.isfinite(accuracy) or not 0.0 <= accuracy <= 1.0:
    raise ValueError(f"accuracy {accuracy!r} must be a fraction in [0, 1]")


def mnas_reward(accuracy: float, latency_ms: float, target_ms: float,
                alpha: float = SOFT_EXPONENT,
                beta: float = SOFT_EXPONENT) -> float:
  """MnasNet's reward ACC * (LAT / T) ** w, w = alpha if LAT <= T else beta.

  Args:
    accuracy: Accuracy in [0, 1].
    latency_ms: Measured latency, > 0.
    target_ms: Latency target T, > 0.
    alpha: Exponent at or under the target (<= 0).
    beta: Exponent over the target (<= 0).

  Returns:
    The reward; equal to `accuracy` exactly at the target.

  Raises:
    ValueError: a non-positive latency or target, or accuracy outside [0, 1].
  """
  _check(accuracy, latency_ms, target_ms)
  ratio = latency_ms / target_ms
  exponent = alpha if latency_ms <= target_ms else beta
  return float(accuracy * ratio ** exponent)


def absolute_reward(accuracy: float, latency_ms: float, target_ms: float,
                    beta: float = SOFT_EXPONENT) -> float:
  """TuNAS's absolute reward ACC + beta * |LAT / T - 1| (beta < 0).

  Raises:
    ValueError: a non-positive latency or target, or accuracy outside [0, 1].
  """
  _check(accuracy, latency_ms, target_ms)
  return float(accuracy + beta * abs(latency_ms / target_ms - 1.0))


@dataclasses.dataclass(frozen=True)
class RewardConfig:
  """Which reward the search uses.

  Attributes:
    target_ms: The latency target T in ms.
    kind: 'soft' (MnasNet, alpha = beta = -0.07), 'hard' (alpha = 0,
      beta = -1), 'mnas' (MnasNet with the given alpha and beta) or 'abs'
      (TuNAS, ACC + beta * |LAT/T - 1|, beta default -0.07).
    alpha: Exponent at or under T for 'mnas'; None: the kind's default.
    beta: Exponent over T ('mnas') or penalty slope ('abs'); None: default.
  """

  target_ms: float
  kind: str = "soft"
  alpha: Optional[float] = None
  beta: Optional[float] = None

  def __post_init__(self):
    if self.kind not in REWARD_KINDS:
      raise ValueError(f"reward kind '{self.kind}' is not one of "
                       f"{REWARD_KINDS}")
    if (not isinstance(self.target_ms, (int, float)) or
        not math.isfinite(self.target_ms) or self.target_ms <= 0):
      raise ValueError(f"latency target {self.target_ms!r} ms must be a "
                       "positive number (--target_ms)")
    default_alpha, default_beta = _DEFAULTS[self.kind]
    if self.kind in ("soft", "hard"):
      for name, given, default in (("alpha", self.alpha, default_alpha),
                                   ("beta", self.beta, default_beta)):
        if given is not None and given != default:
          raise ValueError(f"reward kind '{self.kind}' fixes {name}="
                           f"{default}; use kind='mnas' for {name}={given}")
    if self.kind == "mnas" and (self.alpha is None or self.beta is None):
      raise ValueError("reward kind 'mnas' needs both alpha and beta")
    if self.kind == "abs" and self.alpha is not None:
      raise ValueError("reward kind 'abs' has no alpha; give beta only")
    object.__setattr__(self, "alpha", self.alpha if self.alpha is not None
                       else default_alpha)
    object.__setattr__(self, "beta", self.beta if self.beta is not None
                       else default_beta)
    for name in ("alpha", "beta"):
      value = getattr(self, name)
      if value is not None and value > 0:
        raise ValueError(f"reward {name}={value} must be <= 0 (a penalty)")

  def get_config(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_config(cls, config: dict) -> "RewardConfig":
    return cls(**config)


def compute_reward(config: RewardConfig, accuracy: Optional[float],
                   latency_ms: Optional[float]) -> Optional[float]:
  """The reward of one candidate under `config`.

  Args:
    config: The reward kind, target and exponents.
    accuracy: Accuracy in [0, 1], or None when the candidate failed.
    latency_ms: Latency in ms, or None when it could not be measured.

  Returns:
    The reward; None when accuracy or latency is None (a failed candidate
    has no reward; see the module docstring).

  Raises:
    ValueError: a non-positive latency or accuracy outside [0, 1].
  """
  if accuracy is None or latency_ms is None:
    return None
  if config.kind == "abs":
    return absolute_reward(accuracy, latency_ms, config.target_ms, config.beta)
  return mnas_reward(accuracy, latency_ms, config.target_ms, config.alpha,
                     config.beta)
