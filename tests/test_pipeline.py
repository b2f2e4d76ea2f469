"""Tests of akd_tf.deploy.pipeline: the search leaves its winner to deploy,
which trains it from the search's teacher and writes best/."""

import dataclasses
import json
import os

from akd_tf.deploy import pipeline
from akd_tf.distill import data as data_lib
from akd_tf.distill import distiller
from akd_tf.distill import teacher as teacher_lib
from akd_tf.latency import timing
from akd_tf.search import loop
from akd_tf.search import reward
from akd_tf.space import arch


def search_config(cache_dir):
  """A digits search of two candidates that take seconds each."""
  proxy = distiller.TrainConfig(epochs=1, batch_size=32, kd_alpha=0.9, seed=3)
  return loop.SearchConfig(
      data=data_lib.DataConfig(dataset="digits", train_size=320,
                               minival_size=300),
      global_params=arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                                      head_size=32, depth_multiplier=0.25),
      proxy=proxy, final=dataclasses.replace(proxy, epochs=1),
      final_train_size=320, reward=reward.RewardConfig(target_ms=0.05),
      teacher_recipe=teacher_lib.TeacherRecipe(epochs=2),
      cache_dir=cache_dir, num_candidates=2, num_workers=1,
      latency=timing.LatencyConfig(runs=5, repeats=1, warmup=2),
      export=False)


def test_search_stops_at_its_best_record_and_deploy_trains_it(tmp_path):
  config = search_config(str(tmp_path / "cache"))
  model_dir = str(tmp_path / "search")
  searched = loop.run_search(config, model_dir)
  assert searched.best is not None and searched.final is None
  assert "final" not in searched.phase_seconds
  assert not os.path.exists(os.path.join(model_dir, "best"))
  assert os.path.exists(searched.teacher_path)
  assert searched.global_params.num_classes == 10

  exported = pipeline.search_and_export(config, model_dir)
  assert exported.evaluated == 0  # Resumed: every candidate was recorded.
  assert exported.best == searched.best
  final = exported.final
  assert final.out_dir == os.path.join(model_dir, "best")
  assert tuple(final.blocks) == searched.best.blocks
  assert exported.phase_seconds["final"] > 0
  with open(os.path.join(final.out_dir, "metrics.json")) as f:
    assert json.load(f)["test_accuracy"] == final.test_accuracy
  assert os.path.exists(os.path.join(final.out_dir, "student.keras"))
