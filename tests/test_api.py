"""Tests of akd_tf.api: `akd_tf.search`, akd-search as one Python call."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import akd_tf
from akd_tf.distill import data as data_lib
from akd_tf.distill import teacher as teacher_lib
from akd_tf.nas import history
from search_testing import QUICK_SEED

# akd-search's flags for a digits search small enough for a test (the
# settings of tests/search_testing.py's tiny config).
TINY = dict(dataset="digits", proxy_train_size=320, minival_size=300,
            proxy_epochs=1, proxy_batch_size=32, seed=QUICK_SEED,
            head_size=32, width_multiplier=0.25, final_train_size=320,
            final_epochs=1, final_batch_size=32, target_ms=0.05,
            num_candidates=2, latency_runs=5, latency_repeats=1,
            export=False)


def _digits_teacher(seed: int = 0) -> keras.Model:
  """A small dense classifier of digits' 8x8x1 images, trained briefly, that
  outputs logits."""
  keras.utils.set_random_seed(seed)
  digits = data_lib.load_data(data_lib.DataConfig("digits"))
  model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(64, activation="relu"),
                            keras.layers.Dense(10)])
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  model.fit(digits.train.images, digits.train.labels, epochs=3, verbose=0)
  return model


def test_search_with_an_in_memory_teacher_returns_student_metrics_history(
    tmp_path):
  teacher = _digits_teacher()
  model_dir = str(tmp_path / "search")
  lines = []
  result = akd_tf.search(teacher=teacher, model_dir=model_dir,
                         cache_dir=str(tmp_path / "cache"), log=lines.append,
                         **TINY)

  assert isinstance(result.student, keras.Model)
  assert result.student.output_shape == (None, 10)
  assert len(result.history) == 2
  assert result.best in result.history
  assert result.best.reward == max(r.reward for r in result.history if r.ok)
  metrics = result.metrics
  assert metrics["blocks"] == list(result.best.blocks)
  assert metrics["accuracy"] == result.best.accuracy
  assert metrics["latency_ms"] == result.best.latency_ms > 0
  assert metrics["reward"] == result.best.reward
  assert 0.0 <= metrics["test_accuracy"] <= 1.0
  assert np.isnan(metrics["exported_latency_ms"])  # export=False.
  assert set(metrics["files"]) == {"arch_json", "student_keras",
                                   "metrics_json"}
  assert all(os.path.exists(path) for path in metrics["files"].values())
  assert any(line.startswith("[2/2]") for line in lines)
  # The teacher went to the workers as a file named by its weights, and
  # its logits were cached by the same weights.
  saved = os.path.join(model_dir,
                       f"teacher_{teacher_lib.weights_hash(teacher)}.keras")
  with open(os.path.join(model_dir, "search_config.json")) as f:
    assert json.load(f)["teacher"] == os.path.abspath(saved)
  assert os.listdir(tmp_path / "cache" / "teacher_logits")
  assert history.load_history(model_dir) == list(result.history)
  # The student is the trained winner, not a fresh build: its predictions
  # on the test split give the test accuracy of its metrics.
  digits = data_lib.load_data(data_lib.DataConfig(
      "digits", train_size=320, minival_size=300))
  predicted = np.argmax(result.student.predict(digits.test.images,
                                               verbose=0), axis=-1)
  assert np.mean(predicted == digits.test.labels) == pytest.approx(
      metrics["test_accuracy"], abs=1e-6)


def test_another_in_memory_teacher_does_not_resume_a_search(tmp_path):
  model_dir = str(tmp_path / "search")
  os.makedirs(model_dir)
  first = _digits_teacher(seed=0)
  first_path = os.path.join(
      model_dir, f"teacher_{teacher_lib.weights_hash(first)}.keras")
  first.save(first_path)
  config = dict(TINY, teacher=first_path, cache_dir=str(tmp_path / "cache"))
  with open(os.path.join(model_dir, "search_config.json"), "w") as f:
    json.dump(_search_config(config), f)
  with pytest.raises(ValueError, match=r"other settings of \['teacher'\]"):
    akd_tf.search(teacher=_digits_teacher(seed=1), model_dir=model_dir,
                  cache_dir=str(tmp_path / "cache"), **TINY)


def _search_config(settings) -> dict:
  """The search_config.json akd_tf.search writes for `settings`."""
  from akd_tf import api  # pylint: disable=g-import-not-at-top
  from akd_tf.cli import flag_configs  # pylint: disable=g-import-not-at-top
  return flag_configs.search_config_from_flags(
      api._flag_values(settings)).get_config()  # pylint: disable=protected-access


def test_an_unknown_setting_is_a_type_error_naming_the_close_flag(tmp_path):
  with pytest.raises(TypeError, match="'num_candidate'.*num_candidates"):
    akd_tf.search(model_dir=str(tmp_path), num_candidate=3)


def test_a_bad_value_is_a_value_error_naming_its_flag(tmp_path):
  with pytest.raises(ValueError, match=r"--num_candidates=0: .*>= 1"):
    akd_tf.search(model_dir=str(tmp_path), num_candidates=0)
  with pytest.raises(ValueError, match=r"--reward='fast'"):
    akd_tf.search(model_dir=str(tmp_path), reward="fast")


def test_logical_cpus_after_tensorflows_first_use_names_the_setting(
    tmp_path):
  tf.constant(1.0)  # TensorFlow has set up its devices.
  with pytest.raises(ValueError, match="--logical_cpus=2 must be set before"):
    akd_tf.search(model_dir=str(tmp_path), logical_cpus=2, dataset="digits")


def test_a_teacher_of_another_type_is_a_type_error(tmp_path):
  with pytest.raises(TypeError, match="teacher is a int"):
    akd_tf.search(model_dir=str(tmp_path), teacher=3)


def test_import_akd_tf_imports_no_tensorflow():
  code = ("import sys, akd_tf; assert callable(akd_tf.__getattr__); "
          "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                           sys.path)))
  assert out.stdout.split() == ["False", "False"]


def test_a_preset_sets_the_search_and_keywords_override_it():
  from akd_tf import api  # pylint: disable=g-import-not-at-top
  values = api._flag_values(  # pylint: disable=protected-access
      {"num_candidates": 3}, preset="fashion_mnist_quick")
  assert values.proxy_train_size == 3000  # The preset's.
  assert values.num_candidates == 3  # The keyword's.
  with pytest.raises(ValueError, match="no preset 'quick'"):
    api._flag_values({}, preset="quick")  # pylint: disable=protected-access


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
