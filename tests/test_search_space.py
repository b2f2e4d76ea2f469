"""Tests of akd_tf.space.search_space: actions <-> blocks, size, sampling."""

import math
import sys

import pytest

from akd_tf.space import arch
from akd_tf.space import search_space


@pytest.fixture(name="space")
def fixture_space():
  return search_space.SearchSpace()


def test_num_choices_per_block(space):
  assert space.num_decisions == 42
  # Blocks 0 and 6 have one layer in the skeleton: layer choices 0 | +1.
  assert space.num_choices[:6] == (4, 2, 2, 2, 3, 2)
  assert space.num_choices[6:12] == (4, 2, 2, 2, 3, 3)


def test_log10_size(space):
  expected = 5 * math.log10(4 * 2 * 2 * 2 * 3 * 3) + 2 * math.log10(
      4 * 2 * 2 * 2 * 3 * 2)
  assert space.log10_size == pytest.approx(expected)
  assert 16 < space.log10_size < 18


def test_decode_skeleton_defaults_is_mobilenet_v2_like(space):
  # MBConv6, k3, no SE, residual, x1.0 filters, skeleton depth everywhere but
  # block 0, which is a depthwise-separable conv.
  actions = []
  for b in range(7):
    actions += [1 if b == 0 else 3, 0, 0, 0, 1, 0 if b in (0, 6) else 1]
  blocks = space.decode(actions)
  assert arch.encode_blocks(blocks) == (
      "r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r3_k3_s22_e6_i24_o32",
      "r4_k3_s22_e6_i32_o64", "r3_k3_s11_e6_i64_o96",
      "r3_k3_s22_e6_i96_o160", "r1_k3_s11_e6_i160_o320")


def test_decode_regular_conv_and_extremes(space):
  actions = [0, 1, 1, 1, 2, 1] + [0] * 36
  blocks = space.decode(actions)
  assert blocks[0].encode() == "r2_k5_s11_e1_i32_o20_se0.25_conv_noskip"
  assert blocks[1].encode() == "r1_k3_s22_e1_i20_o18_conv"


def test_encode_inverts_decode(space):
  for seed in range(20):
    actions = space.sample(seed)
    assert space.encode(space.decode(actions)) == actions


def test_sample_is_seeded(space):
  assert space.sample(7) == space.sample(7)
  assert space.sample(7) != space.sample(8)


@pytest.mark.parametrize("actions, message", [
    ([0] * 41, "expected 42 actions"),
    ([4] + [0] * 41, r"action 0 \(block0/conv_op\) = 4 is out of range "
     r"\[0, 3\]"),
    ([0] * 5 + [2] + [0] * 36, r"action 5 \(block0/layers\) = 2 is out of "
     r"range \[0, 1\]"),
    ([0] * 11 + [-1] + [0] * 30, r"action 11 \(block1/layers\) = -1"),
    ([0.5] + [0] * 41, "is not an integer"),
])
def test_decode_rejects_bad_actions(space, actions, message):
  with pytest.raises(ValueError, match=message):
    space.decode(actions)


def test_encode_rejects_block_outside_space(space):
  blocks = list(space.decode([0] * 42))
  blocks[2] = arch.decode_block_string("r2_k7_s22_e1_i18_o24_conv")
  with pytest.raises(ValueError, match="block 2 .*kernel size 7 is not one of"):
    space.encode(blocks)


def test_config_round_trip(space):
  assert search_space.SearchSpace.from_config(
      space.get_config()).num_choices == space.num_choices


def test_choice_labels_name_every_choice_of_every_decision():
  space = search_space.SearchSpace()
  labels = space.choice_labels()
  assert [len(choices) for choices in labels] == list(space.num_choices)
  # Block 1 of MobileNetV2's skeleton: 24 filters, 2 layers.
  assert labels[6:12] == [("conv", "dwconv", "mbconv3", "mbconv6"),
                          ("3", "5"), ("0", "0.25"), ("skip", "noskip"),
                          ("18", "24", "30"), ("1", "2", "3")]
  assert labels[5] == ("1", "2")  # Block 0 has one layer: 0 or +1.


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
