"""Tests of akd_tf.deploy.pipeline: the search leaves its winner to deploy,
which trains it from the search's teacher and writes best/."""

import json
import logging
import os
import sys

import pytest

from akd_tf.deploy import pipeline
from akd_tf.nas import loop
from search_testing import tiny_search_config


def test_search_stops_at_its_best_record_and_deploy_trains_it(tmp_path,
                                                              caplog):
  caplog.set_level(logging.INFO, logger="akd_tf")
  config = tiny_search_config(str(tmp_path / "cache"))
  model_dir = str(tmp_path / "search")
  searched = loop.run_search(config, model_dir)
  # Without a `log`, the progress lines go to the library's loggers.
  assert any(r.name == "akd_tf.nas.loop" and
             r.getMessage().startswith("best: reward") for r in caplog.records)
  assert searched.best is not None and searched.final is None
  assert "final" not in searched.phase_seconds
  assert not os.path.exists(os.path.join(model_dir, "best"))
  assert os.path.exists(searched.teacher_path)
  assert searched.global_params.num_classes == 10
  # One TensorBoard HParams session per candidate.
  assert sorted(os.listdir(os.path.join(model_dir, "tensorboard",
                                        "candidates"))) == [
      f"{r.step}_{r.index}" for r in searched.records]

  exported = pipeline.search_and_export(config, model_dir)
  assert any(r.name == "akd_tf.deploy.pipeline" and
             r.getMessage().startswith("final student:")
             for r in caplog.records)
  assert exported.evaluated == 0  # Resumed: every candidate was recorded.
  assert exported.best == searched.best
  final = exported.final
  assert final.out_dir == os.path.join(model_dir, "best")
  assert tuple(final.blocks) == searched.best.blocks
  assert exported.phase_seconds["final"] > 0
  with open(os.path.join(final.out_dir, "metrics.json")) as f:
    assert json.load(f)["test_accuracy"] == final.test_accuracy
  assert os.path.exists(os.path.join(final.out_dir, "student.keras"))


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
