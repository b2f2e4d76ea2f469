"""Search controllers: a REINFORCE LSTM policy and a uniform random baseline.

`ReinforceController` is the MnasNet/NASNet controller: an LSTM unrolled over
the decisions of the search space; decision t's input is the embedding of the
action sampled at decision t-1 (a learned start token at t=0) and its own
softmax head picks one of that decision's choices. It is trained with
REINFORCE, an exponential moving average reward baseline (TuNAS), an entropy
bonus and Adam.

A candidate that failed (diverged, did not convert, ran out of memory) has no
reward: the search passes None for it. Failures never move the baseline.
REINFORCE gives a failure the lowest successful reward this controller has
seen (this batch's included), so it is pushed away like the worst student
seen, on the scale of the real rewards; before any success a failure is left
out of the update (advantage 0). A batch in which every advantage is 0 (the
first batch of one candidate, whose reward only sets the baseline; failures
before any success) applies no gradient step, only counts the update.

Both controllers keep their whole state (weights, Adam slots, baseline, the
count and lowest of the successful rewards seen, update count and the
sampling RNG) in a `tf.train.Checkpoint`, so a controller restored after k
updates samples and updates exactly as the uninterrupted one.

How many candidates REINFORCE needs: `benchmarks/controller.py` measured, on
an additive reward with the spread and the seed noise the KD ground truth
measured for the short KD proxy, after how many samples REINFORCE's
best-so-far pick stays truly better than random search's;
`REINFORCE_SAMPLES_NEEDED` keeps those figures (the package cannot read
benchmarks/ once installed) and `budget_warning` says when a search is
shorter than that.

Public names: ControllerConfig, ReinforceController, RandomController,
make_controller, budget_warning, CONTROLLER_KINDS, REINFORCE_SAMPLES_NEEDED,
MEASURED_SIGNAL_STD, MEASURED_REWARD_NOISE.
"""

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from akd_tf import config_checks

__all__ = ["CONTROLLER_KINDS", "ControllerConfig", "MEASURED_REWARD_NOISE",
           "MEASURED_SIGNAL_STD", "REINFORCE_SAMPLES_NEEDED",
           "RandomController", "ReinforceController", "budget_warning",
           "make_controller"]

CONTROLLER_KINDS = ("reinforce", "random")
# Samples REINFORCE (default ControllerConfig) needed before its best-so-far
# pick (best by the noisy reward) stayed truly better than random search's,
# median of 10 seeds, by candidates per controller step. Reward:
# benchmarks/controller.py's additive signal (a scaled fraction of the 42
# actions equal to 0) at the scale the KD ground truth (benchmarks/
# kd_bench.py) measured for the quick preset's short KD proxy: a spread of
# MEASURED_SIGNAL_STD across architectures and seed noise of
# MEASURED_REWARD_NOISE (benchmarks/results/controller_measured.json,
# 2026-12-01; quartiles 9-25 and 20-66). An additive reward is the easiest
# landscape for REINFORCE, so these are lower bounds. With a signal 100x
# smaller than measured (controller.json) it needed thousands.
REINFORCE_SAMPLES_NEEDED = {1: 18, 4: 58}
MEASURED_SIGNAL_STD = 0.071
MEASURED_REWARD_NOISE = 0.0266
_INIT_RANGE = 0.1  # Uniform weight initialization range of NASNet/ENAS.
_MASKED_LOGIT = -1e9  # Logit of the padding beyond a decision's choices.


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
  """Hyperparameters of a controller.

  Attributes:
    lstm_units: Hidden size of the LSTM policy.
    embedding_size: Size of the action embeddings fed to the LSTM.
    learning_rate: Adam learning rate.
    entropy_weight: Weight of the policy entropy bonus in the loss.
    baseline_decay: Momentum of the exponential moving average baseline.
    temperature: Logits are divided by this before the softmax.
    tanh_constant: If set, logits become `tanh_constant * tanh(logits)`
      (NASNet/ENAS use 2.5), which bounds how sure the policy can get.
    seed: Seeds the weight initialization and the sampling RNG.
  """

  lstm_units: int = 64
  embedding_size: int = 64
  learning_rate: float = 0.0035
  entropy_weight: float = 1e-3
  baseline_decay: float = 0.95
  temperature: float = 1.0
  tanh_constant: Optional[float] = 2.5
  seed: int = 0

  def __post_init__(self):
    checks = (
        ("lstm_units", self.lstm_units >= 1, ">= 1"),
        ("embedding_size", self.embedding_size >= 1, ">= 1"),
        ("learning_rate", self.learning_rate > 0, "> 0"),
        ("entropy_weight", self.entropy_weight >= 0, ">= 0"),
        ("baseline_decay", 0.0 <= self.baseline_decay < 1.0, "in [0, 1)"),
        ("temperature", self.temperature > 0, "> 0"),
        ("tanh_constant", self.tanh_constant is None or self.tanh_constant > 0,
         "> 0 or None"),
    )
    config_checks.require(
        (ok, f"{name}={getattr(self, name)!r} must be {condition}")
        for name, ok, condition in checks)

  def get_config(self) -> dict:
    return dataclasses.asdict(self)


def _check_num_choices(num_choices: Sequence[int]) -> Tuple[int, ...]:
  num_choices = tuple(num_choices)
  if not num_choices:
    raise ValueError("num_choices is empty: the controller needs a decision")
  for i, n in enumerate(num_choices):
    if isinstance(n, bool) or not float(n).is_integer() or n < 1:
      raise ValueError(f"num_choices[{i}] = {n!r}: every decision needs an "
                       "integer number of choices >= 1")
  return tuple(int(n) for n in num_choices)


def _mean_or_nan(values: np.ndarray) -> float:
  return float(np.mean(values)) if values.size else math.nan


class _Controller(tf.Module):
  """State, checks and checkpointing shared by both controllers."""

  kind = ""  # The `make_controller` name, set by subclasses.

  def __init__(self, num_choices: Sequence[int],
               config: Optional[ControllerConfig] = None):
    super().__init__(name=f"{self.kind}_controller")
    self.num_choices = _check_num_choices(num_choices)
    self.config = config or ControllerConfig()
    self._choices = tf.constant(self.num_choices, tf.int32)
    self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self._rng = tf.random.Generator.from_seed(self.config.seed)
    self._managers: Dict[str, tf.train.CheckpointManager] = {}
    self._checkpoint = None

  @property
  def step(self) -> int:
    """Number of updates applied."""
    return int(self._step.numpy())

  def _checkpoint_objects(self) -> dict:
    return {"step": self._step, "rng": self._rng,
            "kind": tf.Variable(self.kind, trainable=False),
            "num_choices": tf.Variable(self._choices, trainable=False)}

  def _manager(self, directory: str) -> tf.train.CheckpointManager:
    if self._checkpoint is None:
      self._checkpoint = tf.train.Checkpoint(**self._checkpoint_objects())
    directory = str(directory)
    if directory not in self._managers:
      self._managers[directory] = tf.train.CheckpointManager(
          self._checkpoint, directory, max_to_keep=2)
    return self._managers[directory]

  def save(self, directory: str) -> None:
    """Writes the whole controller state as a new checkpoint in `directory`.

    The `checkpoint` index file is replaced atomically after the new files are
    complete and the previous checkpoint is kept, so a process killed during
    `save` leaves the last complete checkpoint restorable.
    """
    self._manager(directory).save()

  def restore(self, directory: str) -> bool:
    """Loads the latest checkpoint of `directory`.

    Returns:
      False if `directory` holds no checkpoint, True after a restore.

    Raises:
      ValueError: the checkpoint is of another controller kind or num_choices,
        or lacks part of the state (written by an older akd_tf).
    """
    path = self._manager(directory).latest_checkpoint
    if path is None:
      return False
    for key, mine in (("kind", self.kind), ("num_choices", self.num_choices)):
      saved = tf.train.load_variable(path, f"{key}/.ATTRIBUTES/VARIABLE_VALUE")
      saved = saved.decode() if key == "kind" else tuple(map(int, saved))
      if saved != mine:
        raise ValueError(f"checkpoint {path} was saved by a controller with "
                         f"{key} {saved!r}; this one has {key} {mine!r}")
    try:
      self._checkpoint.restore(path).assert_existing_objects_matched()
    except AssertionError as error:
      raise ValueError(
          f"checkpoint {path} lacks part of this controller's state (it was "
          "written by an older akd_tf, whose updates differ): start the "
          f"search in a new directory ({str(error)[:200]})") from None
    return True

  def _check_batch(self, batch) -> Tuple[np.ndarray, np.ndarray]:
    """Validates (actions, reward) pairs.

    Returns:
      int32 actions [batch, decisions] and float64 rewards [batch], NaN for
      a failed candidate (reward None).
    """
    batch = list(batch)
    if not batch:
      raise ValueError("update needs a non-empty batch of (actions, reward)")
    actions, rewards = [], []
    for b, (acts, reward) in enumerate(batch):
      acts = tuple(acts)
      if len(acts) != len(self.num_choices):
        raise ValueError(f"batch[{b}] has {len(acts)} actions, expected "
                         f"{len(self.num_choices)}")
      for i, (a, n) in enumerate(zip(acts, self.num_choices)):
        if isinstance(a, bool) or not float(a).is_integer() or not 0 <= a < n:
          raise ValueError(f"batch[{b}] action {i} = {a!r} is not an integer "
                           f"in [0, {n - 1}]")
      if reward is not None and not math.isfinite(float(reward)):
        raise ValueError(f"batch[{b}] reward {reward!r} is not finite; give "
                         "a failed candidate reward None")
      actions.append([int(a) for a in acts])
      rewards.append(math.nan if reward is None else float(reward))
    return np.asarray(actions, np.int32), np.asarray(rewards, np.float64)


class ReinforceController(_Controller):
  """LSTM policy over the decisions, trained by REINFORCE.

  Args:
    num_choices: Number of choices of every decision, in action order, e.g.
      `SearchSpace().num_choices`.
    config: Hyperparameters; `ControllerConfig()` if None.

  Raises:
    ValueError: `num_choices` is empty or has a count below 1.
  """

  kind = "reinforce"

  def __init__(self, num_choices: Sequence[int],
               config: Optional[ControllerConfig] = None):
    super().__init__(num_choices, config)
    cfg = self.config
    num, max_n = len(self.num_choices), max(self.num_choices)
    seeds = iter(range(3))

    def uniform(shape):
      return tf.Variable(tf.random.stateless_uniform(
          shape, seed=[cfg.seed, next(seeds)], minval=-_INIT_RANGE,
          maxval=_INIT_RANGE))

    # Heads and embeddings are padded to the largest choice count (padded
    # logits are masked). Embedding row 0 is the start token and row
    # 1 + t * max_n + a is action a of decision t.
    self._weights = {
        "embedding": uniform([1 + num * max_n, cfg.embedding_size]),
        "lstm_kernel": uniform([cfg.embedding_size + cfg.lstm_units,
                                4 * cfg.lstm_units]),
        "lstm_bias": tf.Variable(tf.zeros([4 * cfg.lstm_units])),
        "head_kernel": uniform([num, cfg.lstm_units, max_n]),
        "head_bias": tf.Variable(tf.zeros([num, max_n])),
    }
    self._baseline = tf.Variable(tf.constant(0.0, tf.float64), trainable=False)
    self._rewards_seen = tf.Variable(tf.constant(0, tf.int64), trainable=False)
    self._lowest_reward = tf.Variable(tf.constant(0.0, tf.float64),
                                      trainable=False)
    self._optimizer = keras.optimizers.Adam(learning_rate=cfg.learning_rate)
    self._optimizer.build(list(self._weights.values()))
    self._sample_fn = tf.function(self._sample, input_signature=[])
    self._greedy_fn = tf.function(self._greedy, input_signature=[])
    batch_signature = [tf.TensorSpec([None, num], tf.int32),
                       tf.TensorSpec([None], tf.float32)]
    self._train_fn = tf.function(self._train, input_signature=batch_signature)
    self._loss_fn = tf.function(self._loss, input_signature=batch_signature)

  def _checkpoint_objects(self) -> dict:
    objects = super()._checkpoint_objects()
    objects.update(self._weights, baseline=self._baseline,
                   rewards_seen=self._rewards_seen,
                   lowest_reward=self._lowest_reward,
                   optimizer=self._optimizer)
    return objects

  def _unroll(self, batch_size, choose):
    """Runs the policy over the decisions in a `tf.while_loop`.

    `choose(t, logits) -> int32 actions [batch]` picks decision t from its
    masked logits [batch, max_n]. Returns the logits [decisions, batch, max_n]
    and the chosen actions [decisions, batch].
    """
    cfg, max_n = self.config, max(self.num_choices)
    w = {k: tf.convert_to_tensor(v) for k, v in self._weights.items()}

    def body(t, h, c, inputs, logits_array, actions_array):
      gates = (tf.matmul(tf.concat([inputs, h], 1), w["lstm_kernel"]) +
               w["lstm_bias"])
      i, f, g, o = tf.split(gates, 4, axis=1)
      c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(g)
      h = tf.sigmoid(o) * tf.tanh(c)
      logits = (tf.matmul(h, w["head_kernel"][t]) +
                w["head_bias"][t]) / cfg.temperature
      if cfg.tanh_constant is not None:
        logits = cfg.tanh_constant * tf.tanh(logits)
      logits = tf.where(tf.range(max_n) < self._choices[t], logits,
                        _MASKED_LOGIT)
      actions = choose(t, logits)
      inputs = tf.gather(w["embedding"], 1 + t * max_n + actions)
      return (t + 1, h, c, inputs, logits_array.write(t, logits),
              actions_array.write(t, actions))

    num = len(self.num_choices)
    zeros = tf.zeros([batch_size, cfg.lstm_units])
    start = tf.gather(w["embedding"], tf.zeros([batch_size], tf.int32))
    loop_vars = (tf.constant(0), zeros, zeros, start, tf.TensorArray(
        tf.float32, size=num), tf.TensorArray(tf.int32, size=num))
    *_, logits, actions = tf.while_loop(lambda t, *_: t < num, body, loop_vars)
    return logits.stack(), actions.stack()

  def _sample(self):
    uniforms = self._rng.uniform([len(self.num_choices)])

    def choose(t, logits):
      cdf = tf.cumsum(tf.nn.softmax(logits), axis=1)
      below = tf.reduce_sum(tf.cast(cdf < uniforms[t], tf.int32), axis=1)
      return tf.minimum(below, self._choices[t] - 1)

    _, actions = self._unroll(1, choose)
    return actions[:, 0]

  def _greedy(self):
    logits, actions = self._unroll(1, lambda t, logits: tf.argmax(
        logits, axis=1, output_type=tf.int32))
    return tf.nn.softmax(logits[:, 0]), actions[:, 0]

  def _loss(self, actions, advantages):
    """The REINFORCE loss, mean entropy and mean log-probability of a batch."""
    logits, _ = self._unroll(tf.shape(actions)[0],
                             lambda t, _: tf.gather(actions, t, axis=1))
    log_p = tf.nn.log_softmax(logits)  # [decisions, batch, max_n]
    one_hot = tf.one_hot(tf.transpose(actions), tf.shape(log_p)[2])
    log_prob = tf.reduce_sum(one_hot * log_p, axis=[0, 2])
    mean_entropy = -tf.reduce_mean(tf.reduce_sum(tf.exp(log_p) * log_p,
                                                 axis=[0, 2]))
    loss = (-tf.reduce_mean(advantages * log_prob) -
            self.config.entropy_weight * mean_entropy)
    return loss, mean_entropy, tf.reduce_mean(log_prob)

  def _train(self, actions, advantages):
    with tf.GradientTape() as tape:
      loss, mean_entropy, mean_log_prob = self._loss(actions, advantages)
    weights = list(self._weights.values())
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, weights)]
    self._optimizer.apply_gradients(zip(grads, weights))
    return loss, mean_entropy, mean_log_prob

  def sample(self) -> Tuple[int, ...]:
    """Draws one architecture's actions from the policy (advances the RNG)."""
    return tuple(int(a) for a in self._sample_fn().numpy())

  def update(self, batch: Sequence[Tuple[Sequence[int], Optional[float]]]
             ) -> Dict[str, float]:
    """One REINFORCE step on a batch of (actions, reward) pairs.

    Reward None marks a failed candidate. The advantage of a successful
    candidate is its reward minus the baseline before this batch; the first
    successful rewards set that baseline to their mean. A failed candidate's
    advantage is the failure penalty minus that baseline, where the penalty
    is the lowest successful reward seen so far (this batch's included);
    before any success a failure's advantage is 0 (it is left out). Then the
    baseline moves towards each successful reward in order,
    `baseline = decay * baseline + (1 - decay) * reward`; failures do not
    move it. When every advantage is 0 no gradient step is taken (the loss
    would be the entropy term alone), but the update is counted in `step`.

    Returns:
      Python floats: loss, baseline (after the update), mean_reward (of the
      successful candidates; NaN if none), entropy (summed over decisions,
      averaged over the batch), mean_log_prob, failed (candidates with reward
      None) and failure_penalty (the lowest successful reward seen, the
      reward a failure stands for; NaN before any success).

    Raises:
      ValueError: an empty batch, a bad action or a non-finite reward.
    """
    actions, rewards = self._check_batch(batch)
    failed = np.isnan(rewards)
    succeeded = rewards[~failed]
    seen = int(self._rewards_seen.numpy())
    baseline = float(self._baseline.numpy())
    lowest = float(self._lowest_reward.numpy())
    if succeeded.size:
      if not seen:
        baseline = lowest = float(np.mean(succeeded))
      lowest = min(lowest, float(np.min(succeeded)))
      seen += succeeded.size
    if seen:
      advantages = np.where(failed, lowest, rewards) - baseline
    else:
      advantages = np.zeros_like(rewards)
    advantages = advantages.astype(np.float32)
    step_fn = self._train_fn if np.any(advantages != 0) else self._loss_fn
    loss, entropy, mean_log_prob = step_fn(tf.constant(actions),
                                           tf.constant(advantages))
    decay = self.config.baseline_decay
    for reward in succeeded:
      baseline = decay * baseline + (1.0 - decay) * float(reward)
    self._baseline.assign(baseline)
    self._rewards_seen.assign(seen)
    self._lowest_reward.assign(lowest)
    self._step.assign_add(1)
    return {"loss": float(loss), "baseline": baseline,
            "mean_reward": _mean_or_nan(succeeded), "entropy": float(entropy),
            "mean_log_prob": float(mean_log_prob),
            "failed": float(np.sum(failed)),
            "failure_penalty": lowest if seen else math.nan}

  def probabilities(self) -> List[np.ndarray]:
    """Per-decision choice probabilities along the greedy (argmax) path."""
    probs = self._greedy_fn()[0].numpy()
    return [probs[t, :n] for t, n in enumerate(self.num_choices)]

  def argmax_actions(self) -> Tuple[int, ...]:
    """The greedy path: each decision's most likely choice given the last."""
    return tuple(int(a) for a in self._greedy_fn()[1].numpy())


class RandomController(_Controller):
  """Uniform random search with the controller interface.

  Args:
    num_choices: Number of choices of every decision, in action order.
    config: Only `seed` is used; `ControllerConfig()` if None.

  Raises:
    ValueError: `num_choices` is empty or has a count below 1.
  """

  kind = "random"

  def sample(self) -> Tuple[int, ...]:
    """Draws every decision uniformly (advances the RNG)."""
    uniforms = self._rng.uniform([len(self.num_choices)], dtype=tf.float64)
    return tuple(min(int(u * n), n - 1)
                 for u, n in zip(uniforms.numpy(), self.num_choices))

  def update(self, batch: Sequence[Tuple[Sequence[int], Optional[float]]]
             ) -> Dict[str, float]:
    """Checks the batch and counts the step; nothing is learned.

    Takes the batches of `ReinforceController.update` (reward None for a
    failed candidate), returns its stats for the uniform policy (loss and
    baseline 0, failure_penalty NaN) and raises the same ValueErrors.
    """
    _, rewards = self._check_batch(batch)
    failed = np.isnan(rewards)
    self._step.assign_add(1)
    log_prob = -float(np.sum(np.log(self.num_choices)))
    return {"loss": 0.0, "baseline": 0.0,
            "mean_reward": _mean_or_nan(rewards[~failed]),
            "entropy": -log_prob, "mean_log_prob": log_prob,
            "failed": float(np.sum(failed)), "failure_penalty": math.nan}

  def probabilities(self) -> List[np.ndarray]:
    """Uniform probability vectors, one per decision."""
    return [np.full(n, 1.0 / n, np.float32) for n in self.num_choices]

  def argmax_actions(self) -> Tuple[int, ...]:
    """All zeros: every choice of a uniform policy is equally likely."""
    return tuple(0 for _ in self.num_choices)


def budget_warning(num_candidates: int,
                   candidates_per_step: int = 1) -> Optional[str]:
  """Says when REINFORCE has fewer candidates than it needs to beat random.

  Args:
    num_candidates: The search's budget.
    candidates_per_step: Candidates per controller update; the figure of
      the smallest benchmarked batch at or above it is used (the largest
      beyond them).

  Returns:
    The warning, naming the figure it used and where it comes from, or None
    when `num_candidates` is at least the samples REINFORCE needed.
  """
  batch = min((b for b in REINFORCE_SAMPLES_NEEDED if b >= candidates_per_step),
              default=max(REINFORCE_SAMPLES_NEEDED))
  needed = REINFORCE_SAMPLES_NEEDED[batch]
  if num_candidates >= needed:
    return None
  return (f"num_candidates={num_candidates} is below the {needed} samples "
          f"REINFORCE needed at {batch} candidate(s) per step before its "
          "best student stayed better than random search's "
          "(benchmarks/controller.py on an additive reward at the short KD "
          f"proxy's measured scale: spread {MEASURED_SIGNAL_STD:g}, seed "
          f"noise {MEASURED_REWARD_NOISE:g}; median of 10 seeds, a lower "
          "bound); with this budget expect no gain over --controller=random")


def make_controller(kind: str, num_choices: Sequence[int],
                    config: Optional[ControllerConfig] = None):
  """Builds a controller by name.

  Args:
    kind: 'reinforce' or 'random'.
    num_choices: Number of choices of every decision, in action order.
    config: Hyperparameters; `ControllerConfig()` if None.

  Raises:
    ValueError: an unknown `kind`, or see the controllers' constructors.
  """
  classes = {c.kind: c for c in (ReinforceController, RandomController)}
  if kind in classes:
    return classes[kind](num_choices, config)
  raise ValueError(f"unknown controller kind {kind!r}; expected one of "
                   f"{CONTROLLER_KINDS}")
