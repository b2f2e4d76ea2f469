"""Tests of akd_tf.space.arch: block strings, records and ArchSpec JSON."""

import json
import sys

import pytest

from akd_tf.space import arch
from akd_tf.space import builder


@pytest.mark.parametrize("block_string", [
    "r1_k3_s11_e1_i32_o16_noskip",
    "r2_k3_s22_e6_i16_o24_se0.25",
    "r3_k5_s22_e3_i24_o40_se0.25",
    "r1_k3_s12_e1_i8_o8_se1",
    "r2_k5_s22_e1_i16_o24_conv",
    "r4_k7_s11_e6_i40_o80_se0.5_conv_noskip",
])
def test_encode_decode_round_trip(block_string):
  assert arch.decode_block_string(block_string).encode() == block_string


@pytest.mark.parametrize("preset", sorted(builder.PRESETS))
def test_presets_round_trip(preset):
  strings = builder.preset_block_strings(preset)
  assert arch.encode_blocks(arch.decode_blocks(strings)) == strings


def test_decode_fields():
  block = arch.decode_block_string("r2_k5_s22_e6_i16_o24_se0.25_noskip")
  assert block == arch.BlockArgs(kernel_size=5, num_repeat=2,
                                 input_filters=16, output_filters=24,
                                 expand_ratio=6, id_skip=False,
                                 strides=(2, 2), se_ratio=0.25)


def test_decode_accepts_tokens_in_any_order():
  block = arch.decode_block_string("o24_i16_se0.25_e6_s22_k3_r2")
  assert block.encode() == "r2_k3_s22_e6_i16_o24_se0.25"


@pytest.mark.parametrize("block_string, message", [
    ("r1_k3_s11_e1_i32_o16_x5", "unknown key 'x'"),
    ("r1_k3_s11_e1_i32_o16_foo", "unknown token 'foo'"),
    ("r1_k3_e1_i32_o16", "missing stride"),
    ("k3_s11_e1_i32_o16", "missing repeat count"),
    ("r1_s11_e1_i32_o16", "missing kernel size"),
    ("r1_k3_s11_i32_o16", "missing expansion ratio"),
    ("r1_k3_s11_e1_o16", "missing input filters"),
    ("r1_k3_s11_e1_i32", "missing output filters"),
    ("r1_k4_s11_e1_i32_o16", "kernel size k4 must be a positive odd"),
    ("r1_k3_s1_e1_i32_o16", "must be two digits"),
    ("r1_k3_s13_e1_i32_o16", "each 1 or 2"),
    ("r1_k3_s11_e1_i32_o16_se1.5", "SE ratio se1.5 must be in (0, 1]"),
    ("r1_k3_s11_e1_i32_o16_se0", "SE ratio se0 must be in (0, 1]"),
    ("r1_k3_s11_e1_i32_o16_se0.2.5", "SE ratio 'se0.2.5' is not a number"),
    ("r0_k3_s11_e1_i32_o16", "repeat count r0 must be >= 1"),
    ("r1_k3_s11_e0_i32_o16", "expansion ratio e0 must be >= 1"),
    ("r1_k3_s11_e1_i0_o16", "input filters i0 must be >= 1"),
    ("r1_k3_s11_e1_i32_o0", "output filters o0 must be >= 1"),
    ("r1_k3.5_s11_e1_i32_o16", "field 'k' needs a non-negative integer"),
    ("r1_r2_k3_s11_e1_i32_o16", "key 'r' appears twice"),
    ("r1_k3_s11_e1_i32_o16_noskip_noskip", "token 'noskip' appears twice"),
    ("", "empty block string"),
])
def test_decode_rejects_malformed_string(block_string, message):
  with pytest.raises(ValueError) as error:
    arch.decode_block_string(block_string, index=3)
  assert message in str(error.value)
  if block_string:
    assert f"block 3 '{block_string}'" in str(error.value)


def test_decode_blocks_rejects_broken_chain():
  with pytest.raises(ValueError, match="block 1 .*input filters i32 do not "
                     "match the output filters o16 of block 0"):
    arch.decode_blocks(["r1_k3_s11_e1_i32_o16", "r1_k3_s11_e1_i32_o16"])


def test_decode_blocks_rejects_single_string():
  with pytest.raises(ValueError, match="list of block strings"):
    arch.decode_blocks("r1_k3_s11_e1_i32_o16")


def test_global_params_rejects_bad_values():
  with pytest.raises(ValueError, match="batch_norm_momentum=1.5"):
    arch.GlobalParams(batch_norm_momentum=1.5)
  with pytest.raises(ValueError, match="activation='gelu'"):
    arch.GlobalParams(activation="gelu")


def test_global_params_from_config_names_unknown_keys():
  with pytest.raises(ValueError, match=r"unknown keys \['bogus'\]"):
    arch.GlobalParams.from_config({"bogus": 1})


def test_records_are_immutable():
  block = arch.decode_block_string("r1_k3_s11_e1_i32_o16")
  with pytest.raises(AttributeError):
    block.kernel_size = 5


def test_arch_spec_json_round_trip(tmp_path):
  spec = arch.ArchSpec(
      blocks=arch.decode_blocks(builder.preset_block_strings("mnasnet_a1")),
      global_params=arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9),
      input_shape=(28, 28, 1))
  path = tmp_path / "arch.json"
  spec.to_json(str(path))
  assert json.loads(path.read_text())["blocks"][0] == (
      "r1_k3_s11_e1_i32_o16_noskip")
  assert arch.ArchSpec.from_json(str(path)) == spec


def test_arch_spec_from_json_rejects_non_architecture(tmp_path):
  path = tmp_path / "arch.json"
  path.write_text("[1, 2]")
  with pytest.raises(ValueError, match="expected a JSON object"):
    arch.ArchSpec.from_json(str(path))
  path.write_text("{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    arch.ArchSpec.from_json(str(path))
  path.write_text('{"blocks": ["r1_k2_s11_e1_i32_o16"], "input_shape": '
                  '[28, 28, 1]}')
  with pytest.raises(ValueError, match="kernel size k2"):
    arch.ArchSpec.from_json(str(path))


def test_arch_spec_rejects_bad_input_shape():
  with pytest.raises(ValueError, match="input_shape"):
    arch.ArchSpec(blocks=arch.decode_blocks(["r1_k3_s11_e1_i32_o16"]),
                  global_params=arch.GlobalParams(), input_shape=(28, 28))


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
