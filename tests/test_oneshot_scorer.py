"""The one-shot scorer: a path's accuracy after its own BN recalibration."""

import dataclasses
import sys

import numpy as np
import pytest
import tensorflow as tf

from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.oneshot import scorer as scorer_lib
from akd_tf.oneshot import student as student_lib
from akd_tf.oneshot import supernet as supernet_lib
from akd_tf.space import arch
from akd_tf.space import search_space

# The first two blocks of the skeleton (every kind of decision), digits'
# native 8x8 images, a stride-1 stem.
SPACE = search_space.SearchSpace(search_space.MOBILENET_V2_SKELETON[:2])
PARAMS = arch.GlobalParams(num_classes=10, head_size=64,
                           batch_norm_momentum=0.9, stem_strides=1)
CONFIG = scorer_lib.OneShotConfig(calibration_images=256, eval_batch_size=128)


@pytest.fixture(scope="module")
def digits():
  return data_lib.load_data(data_lib.DataConfig("digits"))


@pytest.fixture(scope="module")
def supernet(digits):
  return _perturbed_supernet(digits)


def _perturbed_supernet(digits) -> supernet_lib.Supernet:
  """A supernet whose weights and BN statistics are all moved off their
  initial values (the statistics far from what any path computes)."""
  tf.keras.utils.set_random_seed(0)
  net = supernet_lib.Supernet(SPACE, PARAMS, digits.input_shape)
  rng = np.random.default_rng(0)
  for variable in net.weights:
    value = variable.numpy()
    variable.assign(value * rng.uniform(0.5, 1.5, value.shape) +
                    rng.normal(0.0, 0.1, value.shape))
  return net


@pytest.fixture(scope="module")
def scorer(supernet, digits):
  return scorer_lib.OneShotScorer(supernet, digits.train, digits.minival, CONFIG)


def _rss_bytes() -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) * 1024
  raise OSError("no VmRSS in /proc/self/status")


def test_score_is_the_student_accuracy_with_bn_recomputed_on_its_path(
    supernet, scorer, digits):
  actions = SPACE.sample(7)
  # Inherited before scoring: the supernet's own (wrong) statistics, then
  # recomputed on the calibration images as one batch, in Keras.
  student = student_lib.inherit_student(supernet, actions)
  calibration, _ = data_lib.arrays(digits.train, CONFIG.calibration_images,
                                   seed=CONFIG.calibration_seed)
  candidate_training.set_bn_momentum(student, 0.0)
  student(calibration, training=True)
  images, labels = data_lib.arrays(digits.minival)
  logits = student.predict(images, verbose=0)
  expected_accuracy = np.mean(np.argmax(logits, -1) == labels)
  expected_loss = np.mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels, logits))
  score = scorer.score(actions)
  assert score.accuracy == pytest.approx(expected_accuracy, abs=1e-6)
  assert score.loss == pytest.approx(expected_loss, rel=1e-4)


def test_without_recalibration_a_path_keeps_the_supernets_statistics(digits):
  net = _perturbed_supernet(digits)
  actions = SPACE.sample(7)
  student = student_lib.inherit_student(net, actions)
  images, labels = data_lib.arrays(digits.minival)
  expected = np.mean(np.argmax(student.predict(images, verbose=0), -1) ==
                     labels)
  score = scorer_lib.OneShotScorer(
      net, digits.train, digits.minival,
      dataclasses.replace(CONFIG, calibration_images=0)).score(actions)
  assert score.accuracy == pytest.approx(expected, abs=1e-6)


def test_score_of_a_path_does_not_depend_on_paths_scored_before(scorer):
  first = scorer.score(SPACE.sample(11))
  scorer.score_many([SPACE.sample(12), tuple(n - 1 for n in SPACE.num_choices)])
  again = scorer.score(SPACE.sample(11))
  assert (again.accuracy, again.loss) == pytest.approx(
      (first.accuracy, first.loss), rel=1e-6)


def test_scoring_many_paths_traces_once_and_keeps_memory_flat(scorer):
  for seed in range(10):  # Warm up: the trace, allocator pools.
    scorer.score(SPACE.sample(seed))
  before = _rss_bytes()
  scores = scorer.score_many([SPACE.sample(100 + s) for s in range(50)])
  growth = _rss_bytes() - before
  assert scorer.tracing_count == 1
  assert growth < 0.1 * before, f"RSS grew {growth / 2**20:.0f} MB"
  assert len({s.loss for s in scores}) > 40  # Paths differ.


def test_scorer_refuses_an_empty_minival(supernet, digits):
  empty = data_lib.Split("minival", 0, "empty", digits.minival.images[:0],
                         digits.minival.labels[:0])
  with pytest.raises(ValueError, match="mini-val split is empty"):
    scorer_lib.OneShotScorer(supernet, digits.train, empty, CONFIG)


def test_scorer_names_the_decision_out_of_range(scorer):
  actions = list(SPACE.sample(0))
  actions[0] = 4
  with pytest.raises(ValueError, match=r"action 0 \(block0/conv_op\) = 4"):
    scorer.score(actions)


def test_score_of_block_strings_is_the_score_of_their_path(scorer):
  actions = SPACE.sample(21)
  blocks = arch.encode_blocks(SPACE.decode(actions))
  by_blocks = scorer.score_blocks(blocks)
  by_path = scorer.score(actions)
  assert (by_blocks.accuracy, by_blocks.loss) == pytest.approx(
      (by_path.accuracy, by_path.loss), rel=1e-6)


def test_score_blocks_names_a_block_outside_the_space(scorer):
  blocks = list(arch.encode_blocks(SPACE.decode(SPACE.sample(0))))
  blocks[0] = blocks[0].replace("_k3_", "_k7_").replace("_k5_", "_k7_")
  with pytest.raises(ValueError, match="kernel"):
    scorer.score_blocks(blocks)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
