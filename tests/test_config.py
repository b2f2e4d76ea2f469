"""Tests of akd_tf.nas.config: a search's configuration and the check that
a resumed search keeps the settings its records depend on."""

import dataclasses
import json
import sys

import pytest

from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.nas import config as config_lib
from akd_tf.nas import reward
from akd_tf.space import arch


def _config(**changes):
  config = config_lib.SearchConfig(
      data=data_lib.DataConfig(dataset="digits"),
      global_params=arch.GlobalParams(num_classes=10),
      proxy=candidate_training.TrainConfig(),
      final=candidate_training.TrainConfig(),
      reward=reward.RewardConfig(target_ms=0.05))
  return dataclasses.replace(config, **changes)


def test_search_saved_before_a_setting_existed_resumes(tmp_path):
  # A setting added since the search was written did what its default did
  # then: no BatchNormalization recalibration (today's default is 1000).
  before = _config(
      proxy=candidate_training.TrainConfig(bn_recalibration_images=0))
  saved = before.get_config()
  del saved["teacher_output"]
  del saved["candidates_per_worker"]
  del saved["proxy"]["bn_recalibration_images"]
  path = tmp_path / "search_config.json"
  path.write_text(json.dumps(saved))
  config_lib.check_resume_config(str(path), before.get_config())
  path.write_text(json.dumps(saved))
  with pytest.raises(ValueError, match=r"other settings of \['teacher_output'"):
    config_lib.check_resume_config(str(path), dataclasses.replace(
        before, teacher_output="probabilities").get_config())


def test_search_saved_before_bn_recalibration_does_not_resume_with_it(
    tmp_path):
  saved = _config(proxy=candidate_training.TrainConfig(
      bn_recalibration_images=0)).get_config()
  del saved["proxy"]["bn_recalibration_images"]
  path = tmp_path / "search_config.json"
  path.write_text(json.dumps(saved))
  with pytest.raises(ValueError, match=r"other settings of \['proxy'\]"):
    config_lib.check_resume_config(str(path), _config().get_config())


def test_candidates_per_worker_is_a_resumable_change(tmp_path):
  # Which process evaluates a candidate does not change its record.
  path = str(tmp_path / "search_config.json")
  config_lib.check_resume_config(path, _config().get_config())
  config_lib.check_resume_config(
      path, _config(candidates_per_worker=0).get_config())
  with open(path) as f:
    assert json.load(f)["candidates_per_worker"] == 0


def test_oneshot_candidates_per_task_is_a_resumable_change(tmp_path):
  path = str(tmp_path / "search_config.json")
  config_lib.check_resume_config(path,
                                 _config(proxy_mode="oneshot").get_config())
  config_lib.check_resume_config(path, _config(
      proxy_mode="oneshot", oneshot_candidates_per_task=5).get_config())
  with open(path) as f:
    assert json.load(f)["oneshot_candidates_per_task"] == 5


def test_negative_oneshot_candidates_per_task_is_refused():
  with pytest.raises(ValueError, match="oneshot_candidates_per_task=-1 must"):
    _config(oneshot_candidates_per_task=-1)


def test_search_saved_before_the_oneshot_proxy_resumes_only_as_trained(
    tmp_path):
  # Its candidates were trained: the one-shot settings are part of what a
  # record depends on, and a search saved without them ran with 'train'.
  saved = _config().get_config()
  for name in ("proxy_mode", "supernet_steps", "supernet_sampling",
               "supernet_paths_per_step", "supernet_warmup_steps", "oneshot"):
    del saved[name]
  path = tmp_path / "search_config.json"
  path.write_text(json.dumps(saved))
  config_lib.check_resume_config(str(path), _config().get_config())
  path.write_text(json.dumps(saved))
  with pytest.raises(ValueError, match=r"other settings of \['proxy_mode'"):
    config_lib.check_resume_config(
        str(path), _config(proxy_mode="oneshot").get_config())


def test_supernet_settings_are_not_resumable_changes(tmp_path):
  path = str(tmp_path / "search_config.json")
  oneshot = _config(proxy_mode="oneshot", supernet_steps=100)
  config_lib.check_resume_config(path, oneshot.get_config())
  with pytest.raises(ValueError, match=r"other settings of \['supernet_steps'"):
    config_lib.check_resume_config(path, dataclasses.replace(
        oneshot, supernet_steps=200).get_config())


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
