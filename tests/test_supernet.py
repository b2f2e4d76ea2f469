"""The supernet is the search space: every path is its builder student."""

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from akd_tf.distill import data as data_lib
from akd_tf.oneshot import student as student_lib
from akd_tf.oneshot import supernet as supernet_lib
from akd_tf.space import arch
from akd_tf.space import search_space

SPACE = search_space.SearchSpace()
# Tiny widths (a quarter, not rounded to 8) keep every width choice
# distinct; 48x48 images with a stride-1 stem leave the last blocks 3x3, so
# that a 5x5 kernel sees more than a 3x3 one in every block.
PARAMS = arch.GlobalParams(num_classes=10, depth_multiplier=0.25,
                           depth_divisor=1, head_size=16,
                           batch_norm_momentum=0.9, stem_strides=1)
IMAGE_SIZE = 48
SMALLEST = (0,) * SPACE.num_decisions
LARGEST = tuple(n - 1 for n in SPACE.num_choices)


@pytest.fixture(scope="module")
def images():
  digits = data_lib.load_data(data_lib.DataConfig("digits",
                                                  image_size=IMAGE_SIZE))
  return digits.train.images[:16]


@pytest.fixture(scope="module")
def supernet():
  """A supernet whose every packed value (BN parameters and statistics
  included) is moved off its initial value, so that a slice mapped to the
  wrong weight shows."""
  tf.keras.utils.set_random_seed(0)
  net = supernet_lib.Supernet(SPACE, PARAMS, (IMAGE_SIZE, IMAGE_SIZE, 1))
  rng = np.random.default_rng(0)
  for variable in net.weights:
    value = variable.numpy()
    variable.assign(value * rng.uniform(0.7, 1.3, value.shape) +
                    rng.normal(0.0, 0.05, value.shape))
  return net


@pytest.fixture(scope="module")
def infer(supernet):
  """Logits of a path after its BN statistics are calibrated on the batch
  (with the moving statistics of initialization the signal fades through
  24 layers and every image gets the same logits)."""

  def logits(x, path):
    supernet.forward(x, path, "calibrate")
    return supernet.forward(x, path, "infer")

  return tf.function(logits, autograph=False)


# Deep paths of a random BatchNormalization network are chaotic: on the
# largest path the student alone gives logits 4.7e-4 apart for a batch of 16
# and one image at a time, and one ulp on its weights moves them 1.8e-3. So
# the whole network is compared end to end on paths whose student is stable
# to 1e-5 by itself, and layer by layer on every path.
@pytest.mark.parametrize("actions", [SMALLEST, SPACE.sample(1),
                                     SPACE.sample(6)],
                         ids=["smallest", "sampled1", "sampled6"])
def test_supernet_on_a_path_equals_the_inherited_builder_student(
    supernet, infer, images, actions):
  got = infer(images, supernet.path_tensor(actions)).numpy()
  student = student_lib.inherit_student(supernet, actions)
  expected = student(images, training=False).numpy()
  assert expected.std(axis=0).mean() > 0.01  # Images get other logits.
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("actions", [
    SMALLEST, LARGEST, SPACE.sample(2), SPACE.sample(3), SPACE.sample(4)],
                         ids=["smallest", "largest", "sampled2", "sampled3",
                              "sampled4"])
def test_every_layer_of_a_path_equals_the_inherited_students_layer(
    supernet, images, actions):
  path = supernet.path_tensor(actions)
  supernet.forward(images, path, "calibrate")
  student = student_lib.inherit_student(supernet, actions)
  names = [layer.name for layer in student.layers]
  ends = []
  for b, block in enumerate(SPACE.decode(actions)):
    for r in range(block.num_repeat):
      mine = [n for n in names if n.startswith(f"block{b}_{r}_")]
      ends.append((b, r, student.get_layer(mine[0]).input,
                   student.get_layer(mine[-1]).output))
  probe = keras.Model(student.inputs, [t for e in ends for t in e[2:]])
  values = probe(images, training=False)
  for i, (b, r, _, _) in enumerate(ends):
    layer_input, expected = values[2 * i], values[2 * i + 1]
    got = supernet.apply_layer(layer_input, path, b, r, "infer")
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0,
                               atol=1e-5, err_msg=f"block{b}_{r}")


def test_inherited_student_is_built_from_the_path_block_strings(supernet):
  actions = SPACE.sample(4)
  student = student_lib.inherit_student(supernet, actions)
  spec = student_lib.path_spec(supernet, actions)
  assert spec.blocks == SPACE.decode(actions)
  assert student.count_params() == sum(
      piece.positions().size
      for piece in supernet.path_weight_slices(actions))


def test_every_decision_changes_the_logits(supernet, infer, images):
  base = infer(images, supernet.path_tensor(LARGEST)).numpy()
  names = SPACE.decision_names()
  dead = []
  for i, choices in enumerate(SPACE.num_choices):
    for value in range(choices - 1):
      actions = list(LARGEST)
      actions[i] = value
      changed = infer(images, supernet.path_tensor(actions)).numpy()
      if np.abs(changed - base).max() < 1e-4:
        dead.append(f"{names[i]}={value}")
  assert not dead


def test_one_trace_serves_every_path(supernet, infer, images):
  for seed in range(5):
    infer(images, supernet.path_tensor(SPACE.sample(seed)))
  assert infer.experimental_get_tracing_count() == 1


def test_path_tensor_names_the_decision_out_of_range(supernet):
  actions = list(SMALLEST)
  actions[9] = 2
  with pytest.raises(ValueError, match=r"action 9 \(block1/skip\) = 2"):
    supernet.path_tensor(actions)


def test_supernet_refuses_drop_connect():
  params = arch.GlobalParams(num_classes=10, drop_connect_rate=0.2)
  with pytest.raises(ValueError, match="drop_connect_rate=0.2 is not"):
    supernet_lib.Supernet(SPACE, params, (28, 28, 1))


def test_supernet_refuses_a_stem_that_differs_from_the_space():
  params = arch.GlobalParams(num_classes=10, stem_size=16)
  with pytest.raises(ValueError, match="stem_size=16 differs"):
    supernet_lib.Supernet(SPACE, params, (28, 28, 1))


def test_apply_layer_names_a_layer_the_supernet_lacks(supernet):
  with pytest.raises(ValueError, match="no layer block0_2"):
    supernet.apply_layer(tf.zeros([1, 8, 8, 8]),
                         supernet.path_tensor(SMALLEST), 0, 2)


def test_supernet_config_round_trips():
  net = supernet_lib.Supernet(SPACE, PARAMS, (8, 8, 1))
  again = supernet_lib.Supernet.from_config(net.get_config())
  assert again.get_config() == net.get_config()
  assert [w.shape for w in again.weights] == [w.shape for w in net.weights]


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
