"""Tests of akd_tf.space.builder and akd_tf.space.profile: presets, shapes,
saving, and the same student built with Keras 3 and with tf_keras."""

import sys

import hypothesis
from hypothesis import strategies as st
import keras
import numpy as np
import pytest
import tf_keras

from akd_tf.space import arch
from akd_tf.space import builder
from akd_tf.space import profile
from akd_tf.space import search_space

SPACE = search_space.SearchSpace()
SMALL = arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                          head_size=64, dropout_rate=0.1,
                          drop_connect_rate=0.1)


@pytest.mark.parametrize("preset, params, macs", [
    ("mnasnet_a1", 3.9e6, 312e6),
    ("mnasnet_b1", 4.4e6, 315e6),
    ("mobilenet_v2", 3.5e6, 300e6),
])
def test_preset_matches_published_size(preset, params, macs):
  model = builder.build_student(builder.preset_block_strings(preset),
                                builder.preset_global_params(preset),
                                (224, 224, 3))
  size = profile.profile_model(model)
  assert abs(size.params / params - 1) < 0.02
  assert abs(size.macs / macs - 1) < 0.02


def test_macs_of_a_single_conv_by_hand():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
  x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
  outputs = keras.layers.Dense(5)(keras.layers.Flatten()(x))
  model = keras.Model(inputs, outputs)
  expected = 4 * 4 * (3 * 3 * 3 * 4) + 4 * 4 * (3 * 3 * 4) + 64 * 5
  assert profile.count_macs(model) == expected


@hypothesis.settings(max_examples=6, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(data=st.data())
def test_random_actions_round_trip_build_run_and_save(data, tmp_path_factory):
  actions = tuple(data.draw(st.integers(0, n - 1), label=f"action {i}")
                  for i, n in enumerate(SPACE.num_choices))
  blocks = SPACE.decode(actions)
  assert SPACE.encode(blocks) == actions
  assert SPACE.encode(arch.decode_blocks(arch.encode_blocks(blocks))) == actions
  rng = np.random.default_rng(0)
  for shape in ((28, 28, 1), (32, 32, 3)):
    model = builder.build_student(blocks, SMALL, shape)
    images = rng.uniform(size=(2,) + shape).astype("float32")
    logits = model(images, training=False)
    assert logits.shape == (2, 10)
    assert np.all(np.isfinite(logits))
  path = tmp_path_factory.mktemp("model") / "student.keras"
  model.save(path)
  reloaded = keras.saving.load_model(path, safe_mode=True)
  np.testing.assert_array_equal(reloaded(images, training=False), logits)


def test_residual_only_where_shapes_match():
  model = builder.build_student(
      ["r2_k3_s22_e6_i32_o24", "r2_k3_s11_e6_i24_o24_noskip"], SMALL,
      (32, 32, 3))
  adds = [layer.name for layer in model.layers
          if isinstance(layer, keras.layers.Add)]
  assert adds == ["block0_1_add"]


def test_regular_conv_block_has_no_depthwise_conv():
  model = builder.build_student(["r1_k5_s22_e1_i32_o24_conv"], SMALL,
                                (28, 28, 1))
  assert not any(isinstance(layer, keras.layers.DepthwiseConv2D)
                 for layer in model.layers)
  assert model.get_layer("block0_0_fused_conv").kernel.shape == (5, 5, 32, 24)


def test_se_reduces_from_input_filters():
  model = builder.build_student(["r1_k3_s11_e6_i32_o16_se0.25"], SMALL,
                                (16, 16, 3))
  assert model.get_layer("block0_0_se_reduce").filters == 8
  assert model.get_layer("block0_0_se_expand").filters == 192


def test_bn_momentum_and_width_multiplier_reach_layers():
  params = arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                             depth_multiplier=0.5)
  model = builder.build_student(["r1_k3_s11_e1_i32_o16"], params, (28, 28, 1))
  assert model.get_layer("stem_bn").momentum == pytest.approx(0.9)
  assert model.get_layer("stem_conv").filters == 16
  assert model.get_layer("head_conv").filters == 640


def test_drop_connect_grows_with_depth():
  model = builder.build_student(["r4_k3_s11_e1_i32_o32"], SMALL, (8, 8, 1))
  rates = [layer.rate for layer in model.layers
           if layer.name.endswith("_drop")]
  assert rates == pytest.approx([0.0 + 0.1 * i / 4 for i in range(1, 4)])


def test_round_filters_matches_mnasnet():
  params = arch.GlobalParams(depth_multiplier=0.75)
  assert builder.round_filters(32, params) == 24
  assert builder.round_filters(1280, params) == 960
  assert builder.round_filters(36, arch.GlobalParams()) == 36


def test_stem_mismatch_is_a_clear_error():
  with pytest.raises(ValueError, match="differ from the stem size 32"):
    builder.build_student(["r1_k3_s11_e1_i16_o16"], SMALL, (28, 28, 1))


def test_unknown_preset_lists_known_ones():
  with pytest.raises(ValueError, match="unknown preset 'resnet'.*mnasnet_a1"):
    builder.preset_block_strings("resnet")


# Every kind of block: squeeze-excitation, MBConv with and without
# expansion, regular convolution with and without expansion, no skip, and
# repeated residual layers that get drop-connect.
EVERY_KIND_OF_BLOCK = (
    "r1_k3_s11_e1_i32_o16_se0.25",
    "r2_k5_s22_e6_i16_o24_se0.25",
    "r2_k3_s11_e4_i24_o24_conv",
    "r1_k5_s22_e1_i24_o32_conv",
    "r2_k3_s11_e3_i32_o32_noskip",
    "r2_k3_s11_e6_i32_o32",
)


def _randomize(model, rng):
  """Gives every weight a random value (BN variances positive), so that no
  layer passes its input through unchanged."""
  for variable in model.weights:
    shape = tuple(variable.shape)
    if "variance" in variable.path:
      variable.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
    else:
      variable.assign(rng.normal(0.0, 0.3, shape).astype("float32"))


@pytest.mark.parametrize("activation", ["relu", "relu6", "swish"])
def test_keras3_and_tf_keras_build_the_same_student(activation):
  params = arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                             head_size=64, drop_connect_rate=0.2,
                             depth_multiplier=0.5, activation=activation)
  keras3 = builder.build_student(EVERY_KIND_OF_BLOCK, params, (16, 16, 3))
  legacy = builder.build_student(EVERY_KIND_OF_BLOCK, params, (16, 16, 3),
                                 keras_api=tf_keras)
  assert isinstance(legacy, tf_keras.Model)
  assert ([(layer.name, type(layer).__name__) for layer in legacy.layers] ==
          [(layer.name, type(layer).__name__) for layer in keras3.layers])
  assert any(layer.name.endswith("_drop") for layer in legacy.layers)
  _randomize(keras3, np.random.default_rng(0))
  for layer in keras3.layers:
    legacy.get_layer(layer.name).set_weights(layer.get_weights())
  images = np.random.default_rng(1).uniform(
      size=(4, 16, 16, 3)).astype("float32")
  expected = np.asarray(keras3(images, training=False))
  got = legacy(images, training=False).numpy()
  assert np.std(expected) > 0.1
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
