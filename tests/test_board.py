"""Tests of akd_tf.nas.board: the search's HParams sessions, read back from
the event files TensorBoard reads."""

import glob
import os
import sys

import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.hparams import plugin_data_pb2

from akd_tf.nas import board
from akd_tf.nas import history
from akd_tf.space import search_space

SPACE = search_space.SearchSpace()


def _events(folder: str):
  """Every summary value in the event files of `folder` (not below it)."""
  values = []
  for path in sorted(glob.glob(os.path.join(folder, "events.out.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      values.extend(event.summary.value)
  return values


def _hparams_data(values):
  """The HParams plugin's records among `values`, by tag."""
  return {v.tag: plugin_data_pb2.HParamsPluginData.FromString(
              v.metadata.plugin_data.content)
          for v in values
          if v.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME}


def _scalars(values):
  return {v.tag: float(tf.make_ndarray(v.tensor)) for v in values
          if v.metadata.plugin_data.plugin_name == "scalars"}


@pytest.fixture(name="logs")
def fixture_logs(tmp_path):
  """A board with one successful and one failed candidate."""
  actions = tuple(SPACE.sample(0))
  ok = history.CandidateRecord(
      step=0, index=1, actions=actions, blocks=("b",),
      status=history.STATUS_OK, accuracy=0.8, latency_ms=0.12, reward=0.79,
      params=1000, macs=20000)
  failed = history.CandidateRecord(
      step=1, index=0, actions=tuple(SPACE.sample(1)), blocks=("b",),
      status=history.STATUS_FAILED, latency_ms=0.2, error="NaN loss")
  search_board = board.SearchBoard(str(tmp_path), SPACE)
  search_board.candidate(ok)
  search_board.candidate(failed)
  return tmp_path, ok


def test_each_candidate_is_a_session_with_its_decisions_and_metrics(logs):
  folder, ok = logs
  values = _events(str(folder / "candidates" / "0_1"))
  [start] = [d.session_start_info for d in _hparams_data(values).values()
             if d.HasField("session_start_info")]
  labels = SPACE.choice_labels()
  expected = {name: labels[i][action] for i, (name, action) in
              enumerate(zip(SPACE.decision_names(), ok.actions))}
  assert {name: value.string_value
          for name, value in start.hparams.items()} == dict(
              expected, status="ok")
  assert start.group_name == "0/1"
  scalars = _scalars(values)
  assert scalars == pytest.approx({
      "candidate/accuracy": 0.8, "candidate/latency_ms": 0.12,
      "candidate/reward": 0.79, "candidate/params": 1000.0,
      "candidate/macs": 20000.0})


def test_a_failed_candidate_is_a_session_without_metrics(logs):
  folder, _ = logs
  values = _events(str(folder / "candidates" / "1_0"))
  [start] = [d.session_start_info for d in _hparams_data(values).values()
             if d.HasField("session_start_info")]
  assert start.hparams["status"].string_value == "failed"
  assert not _scalars(values)


def test_the_experiment_names_every_decision_and_metric(logs):
  folder, _ = logs
  [experiment] = [d.experiment for d in _hparams_data(
      _events(str(folder))).values() if d.HasField("experiment")]
  domains = {h.name: list(h.domain_discrete.values)
             for h in experiment.hparam_infos}
  assert len(domains) == SPACE.num_decisions + 1
  assert [v.string_value for v in domains["block1/filters"]] == [
      "18", "24", "30"]
  assert {m.name.tag for m in experiment.metric_infos} == {
      "candidate/accuracy", "candidate/latency_ms", "candidate/reward",
      "candidate/params", "candidate/macs"}


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
