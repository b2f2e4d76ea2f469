"""The search's TensorBoard logs: scalars, and one HParams session per
candidate.

Under `<model_dir>/tensorboard`:
  events of the search   'candidate/*' scalars by candidate number and
                         'controller/*' scalars by controller step
  candidates/<step>_<index>/
                         one HParams session per evaluated candidate: its
                         42 decisions as hyperparameters ('block3/kernel' =
                         '5', with the labels of
                         `SearchSpace.choice_labels`) and 'status', and its
                         accuracy, latency, reward, parameters and MACs as
                         metrics, so that TensorBoard's HParams tab can
                         slice the search by any decision

The experiment (the hyperparameters' domains and the metrics) is written
with the search's scalars when the board opens.

Public names: SearchBoard.
"""

import math
import os
from typing import Dict

from akd_tf.nas import history
from akd_tf.space import search_space

__all__ = ["SearchBoard"]

# The metrics of a candidate's session: scalar tag -> display name.
_METRICS = {"candidate/accuracy": "accuracy",
            "candidate/latency_ms": "latency (ms)",
            "candidate/reward": "reward", "candidate/params": "parameters",
            "candidate/macs": "MACs"}


class SearchBoard:
  """Writes a search's TensorBoard scalars and HParams sessions.

  Args:
    directory: The logs' folder (`<model_dir>/tensorboard`).
    space: The search space the candidates' actions belong to.
  """

  def __init__(self, directory: str, space: search_space.SearchSpace):
    # pylint: disable=g-import-not-at-top
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api
    # pylint: enable=g-import-not-at-top
    self._tf = tf
    self._hparams_api = hparams_api
    self._directory = directory
    self._names = space.decision_names()
    self._labels = space.choice_labels()
    self._writer = tf.summary.create_file_writer(directory)
    domains = [hparams_api.HParam(name, hparams_api.Discrete(list(labels)))
               for name, labels in zip(self._names, self._labels)]
    domains.append(hparams_api.HParam("status", hparams_api.Discrete(
        [history.STATUS_OK, history.STATUS_FAILED])))
    with self._writer.as_default():
      hparams_api.hparams_config(
          hparams=domains,
          metrics=[hparams_api.Metric(tag, display_name=name)
                   for tag, name in _METRICS.items()])
    self._writer.flush()

  def scalars(self, step: int, values: Dict[str, float]) -> None:
    """Writes the finite `values` at `step` in the search's events."""
    with self._writer.as_default():
      for name, value in values.items():
        if value is not None and math.isfinite(value):
          self._tf.summary.scalar(name, value, step=step)
    self._writer.flush()

  def candidate(self, record: history.CandidateRecord) -> None:
    """Writes `record` as an HParams session of its own (a failed one
    without the metrics it lacks)."""
    writer = self._tf.summary.create_file_writer(os.path.join(
        self._directory, "candidates", f"{record.step}_{record.index}"))
    decisions = {name: labels[action] for name, labels, action
                 in zip(self._names, self._labels, record.actions)}
    metrics = {"candidate/accuracy": record.accuracy,
               "candidate/latency_ms": record.latency_ms,
               "candidate/reward": record.reward,
               "candidate/params": float(record.params),
               "candidate/macs": float(record.macs)}
    with writer.as_default():
      self._hparams_api.hparams(dict(decisions, status=record.status),
                                trial_id=f"{record.step}/{record.index}")
      for tag, value in metrics.items():
        if record.ok and value is not None and math.isfinite(value):
          self._tf.summary.scalar(tag, value, step=0)
    writer.close()
