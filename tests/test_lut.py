"""Tests of akd_tf.latency.lut: part keys, sliced parts, the table."""

import sys

import pytest

from akd_tf.latency import lut as lut_lib
from akd_tf.space import arch
from akd_tf.space import builder
from akd_tf.space import search_space
from latency_testing import TINY_PARAMS, tiny_spec


def test_part_keys_match_the_sliced_parts(tiny_model):
  keys = lut_lib.part_keys(tiny_spec())
  parts = lut_lib.slice_parts(tiny_model)
  assert [tuple(p.inputs[0].shape[1:]) for p in parts] == [
      shape for _, shape in keys]
  assert [k.split("|")[2] for k, _ in keys] == [
      "stem_k3_s2_o8", "r1_k3_s11_e1_i8_o8",
      "r1_k3_s22_e3_i8_o16_se0.25_noskip", "r1_k3_s11_e3_i16_o16_se0.25",
      "head_i16_o32_c10"]
  assert sum(p.count_params() for p in parts) == tiny_model.count_params()


def test_layer_keys_are_canonical_block_strings():
  space = search_space.SearchSpace()
  for seed in range(20):
    spec = arch.ArchSpec(space.decode(space.sample(seed)), TINY_PARAMS,
                         (32, 32, 3))
    for key, _ in lut_lib.part_keys(spec)[1:-1]:
      layer = key.split("|")[2]
      assert arch.decode_block_string(layer).encode() == layer


def test_lut_fills_only_missing_parts_and_predicts():
  lut = lut_lib.LatencyLUT({"machine": "test"})
  measured = []

  def measure(part):  # A deterministic stand-in latency: the table logic.
    measured.append(part.name)
    return part.count_params() / 1e6 + 0.001

  assert lut.fill(tiny_spec(), measure) == 1 + 5
  assert lut.fill(tiny_spec(24), measure) == 3
  assert lut.fill(tiny_spec(24), measure) == 0
  assert measured[0] == "overhead"
  assert lut.params(tiny_spec()) == builder.build_from_spec(
      tiny_spec()).count_params()
  with pytest.raises(lut_lib.MissingPartsError, match="fill"):
    lut.predict(tiny_spec(40))
  raw = lut.raw_sum_ms(tiny_spec())
  assert lut.predict(tiny_spec()) == pytest.approx(raw + lut.overhead_ms)
  for spec, ratio in ((tiny_spec(), 1.1), (tiny_spec(24), 1.5),
                      (tiny_spec(), 1.0)):
    lut.add_calibration(spec, ratio * lut.raw_sum_ms(spec) + lut.overhead_ms)
  assert lut.scale == pytest.approx(1.1)
  assert lut.predict(tiny_spec()) == pytest.approx(1.1 * raw +
                                                   lut.overhead_ms)


def test_lut_save_load_round_trip_merges_other_writers(tmp_path):
  path = str(tmp_path / "lut.json")
  first = lut_lib.LatencyLUT({"machine": "m"}, {"a": (0.1, 10)}, 0.001,
                             [(0.1, 0.12)])
  first.save(path)
  second = lut_lib.LatencyLUT({"machine": "m"}, {"b": (0.2, 20)}, 0.001)
  second.save(path)
  loaded = lut_lib.LatencyLUT.load(path)
  assert loaded.entries == {"a": (0.1, 10), "b": (0.2, 20)}
  assert loaded.calibration == [(0.1, 0.12)]
  assert loaded.get_config() == second.get_config()
  (tmp_path / "bad.json").write_text('{"format": "other"}')
  with pytest.raises(ValueError, match="not a latency table"):
    lut_lib.LatencyLUT.load(str(tmp_path / "bad.json"))


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
