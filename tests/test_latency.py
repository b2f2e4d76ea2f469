"""Tests of TFLite conversion, LiteRT timing, the cache, the lookup table and
the on-device command path (with a local stand-in for adb)."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from ai_edge_litert import interpreter as litert
from akd_tf import latency
from akd_tf import latency_lut
from akd_tf.space import arch
from akd_tf.space import builder
from akd_tf.space import search_space

FAKE = os.path.join(os.path.dirname(__file__), "fake_benchmark_model.py")
FAKE_COMMAND = f"{sys.executable} {FAKE} --graph={{tflite}} --num_threads=1"
FAST = latency.LatencyConfig(warmup=2, runs=10, repeats=2)
TINY_BLOCKS = ("r1_k3_s11_e1_i8_o8", "r2_k3_s22_e3_i8_o16_se0.25")
TINY_PARAMS = arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                                stem_size=8, head_size=32)


def tiny_spec(last_filters=16):
  blocks = TINY_BLOCKS[:1] + (f"r2_k3_s22_e3_i8_o{last_filters}_se0.25",)
  return arch.ArchSpec(arch.decode_blocks(blocks), TINY_PARAMS, (28, 28, 1))


@pytest.fixture(scope="module")
def tiny_model():
  return builder.build_from_spec(tiny_spec())


@pytest.fixture(scope="module")
def tiny_tflite(tiny_model):
  return latency.convert_to_tflite(tiny_model)


def run_tflite(tflite, image):
  interpreter = litert.Interpreter(model_content=tflite)
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_tflite_outputs_match_keras(tiny_model, tiny_tflite):
  image = np.random.default_rng(1).random((1, 28, 28, 1), dtype=np.float32)
  expected = tiny_model(image, training=False).numpy()
  got = run_tflite(tiny_tflite, image)
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_int8_conversion_has_int8_input_and_times():
  blocks = ("r1_k3_s11_e1_i8_o8", "r2_k3_s22_e3_i8_o16")  # No SE: see below.
  model = builder.build_student(blocks, TINY_PARAMS, (28, 28, 1))
  tflite = latency.convert_to_tflite(model, quantize="int8")
  interpreter = litert.Interpreter(model_content=tflite)
  assert interpreter.get_input_details()[0]["dtype"] == np.int8
  assert latency.time_tflite(tflite, FAST).latency_ms > 0


def test_int8_layer_that_never_fires_is_a_clear_error():
  image = keras.Input((8, 8, 4), name="image")
  features = keras.layers.Conv2D(4, 3, padding="same",
                                 activation="relu")(image)
  dead = keras.layers.Conv2D(
      2, 1, activation="relu",
      bias_initializer=keras.initializers.Constant(-100.0))(features)
  gate = keras.layers.Conv2D(4, 1, activation="sigmoid")(dead)
  model = keras.Model(image, keras.layers.Multiply()([features, gate]))
  tflite = latency.convert_to_tflite(model, quantize="int8")
  with pytest.raises(latency.LatencyError,
                     match="output range was zero on the calibration"):
    latency.time_tflite(tflite, FAST)


def test_conversion_prints_nothing(tiny_model, capfd):
  capfd.readouterr()
  latency.convert_to_tflite(tiny_model)
  out, err = capfd.readouterr()
  assert out == "" and err == ""


def test_timing_statistics_are_ordered(tiny_tflite):
  stats = latency.time_tflite(tiny_tflite, FAST)
  assert stats.samples == 20
  assert 0 < stats.min_ms <= stats.median_ms <= stats.max_ms
  assert stats.latency_ms == stats.min_ms
  assert stats.cv >= 0
  p10 = latency.time_tflite(tiny_tflite, latency.LatencyConfig(
      warmup=2, runs=10, repeats=2, statistic="p10"))
  assert p10.min_ms <= p10.latency_ms <= p10.max_ms


def test_unconvertible_model_is_a_clear_error():
  image = keras.Input((4, 4, 1), name="image")
  strings = keras.layers.Lambda(
      lambda x: tf.strings.to_number(tf.strings.as_string(x)),
      output_shape=(4, 4, 1))(image)
  model = keras.Model(image, strings, name="stringy")
  with pytest.raises(latency.ConversionError,
                     match=r"(?s)model 'stringy'.*AsString"):
    latency.convert_to_tflite(model)


@pytest.mark.parametrize("make, message", [
    (lambda: "not a model", "expected a keras.Model, got str"),
    (lambda: keras.Sequential([keras.Input((None, None, 3)),
                               keras.layers.Conv2D(2, 3)], name="dynamic"),
     "model 'dynamic' has input shape .* unknown dimensions"),
])
def test_bad_model_is_a_clear_error(make, message):
  with pytest.raises(latency.ConversionError, match=message):
    latency.convert_to_tflite(make())


def test_config_rejects_bad_values_by_name():
  with pytest.raises(ValueError, match="threads=0"):
    latency.LatencyConfig(threads=0)
  with pytest.raises(ValueError, match="statistic='p99'"):
    latency.LatencyConfig(statistic="p99")
  with pytest.raises(ValueError, match="mode 'fast'"):
    latency.LatencyMeasurer("fast")


def test_cache_hit_does_not_convert_again(tmp_path):
  cache = str(tmp_path / "latency.jsonl")
  measurer = latency.LatencyMeasurer("measured", FAST, cache_path=cache)
  first = measurer.measure(tiny_spec())
  second = measurer.measure(tiny_spec())
  assert measurer.num_conversions == 1
  assert (first.cached, second.cached) == (False, True)
  assert second.latency_ms == first.latency_ms
  assert second.stats == first.stats


def test_cache_survives_a_new_process(tmp_path):
  cache = str(tmp_path / "latency.jsonl")
  spec = tiny_spec()
  first = latency.LatencyMeasurer("measured", FAST,
                                  cache_path=cache).measure(spec)
  spec_path = tmp_path / "arch.json"
  spec.to_json(str(spec_path))
  script = textwrap.dedent(f"""
      import json
      from akd_tf import arch, latency
      config = latency.LatencyConfig(warmup=2, runs=10, repeats=2)
      measurer = latency.LatencyMeasurer("measured", config,
                                         cache_path={cache!r})
      result = measurer.measure(arch.ArchSpec.from_json({str(spec_path)!r}))
      print(json.dumps([result.latency_ms, result.cached,
                        measurer.num_conversions]))
  """)
  child = subprocess.run([sys.executable, "-c", script], capture_output=True,
                         text=True, timeout=120, check=False)
  assert child.returncode == 0, child.stderr
  assert json.loads(child.stdout.splitlines()[-1]) == [first.latency_ms, True,
                                                       0]


def test_cache_skips_a_torn_line_and_fences_it(tmp_path):
  path = tmp_path / "latency.jsonl"
  cache = latency_lut.LatencyCache(str(path))
  cache.put("a", {"value": 1})
  with open(path, "a") as f:
    f.write('{"key": "b", "val')
  cache.put("c", {"value": 3})
  reread = latency_lut.LatencyCache(str(path))
  assert reread.get("a")["value"] == 1 and reread.get("c")["value"] == 3
  assert reread.get("b") is None


def test_cache_key_depends_on_shape_threads_machine_and_software():
  spec = tiny_spec()
  settings = FAST.timing_settings()
  key = latency_lut.cache_key(spec, settings, "measured", "m1", "s1")
  other_shape = arch.ArchSpec(spec.blocks, spec.global_params, (32, 32, 3))
  assert key == latency_lut.cache_key(spec, dict(settings), "measured", "m1",
                                      "s1")
  assert key != latency_lut.cache_key(other_shape, settings, "measured", "m1",
                                      "s1")
  assert key != latency_lut.cache_key(spec, dict(settings, threads=2),
                                      "measured", "m1", "s1")
  assert key != latency_lut.cache_key(spec, settings, "measured", "m2", "s1")
  assert key != latency_lut.cache_key(spec, settings, "measured", "m1", "s2")
  assert key != latency_lut.cache_key(spec, settings, "command:adb", "m1",
                                      "s1")


def test_int8_timing_conversion_leaves_the_weights_as_they_were():
  model = builder.build_from_spec(tiny_spec())
  before = [w.numpy().copy() for w in model.weights]
  assert builder.squeeze_reduce_layers(model)
  latency.convert_for_timing(model, "int8")
  for weight, value in zip(model.weights, before):
    np.testing.assert_array_equal(weight.numpy(), value)


def test_software_id_names_converter_interpreter_and_builder_versions():
  software = latency_lut.software_id()
  for package in ("tensorflow", "keras", "litert"):
    assert f"{package}-" in software and f"{package}-?" not in software
  assert f"builder-{builder.BUILDER_VERSION}" in software


@pytest.fixture(name="fresh_software_id")
def fixture_fresh_software_id():
  latency_lut.software_id.cache_clear()
  yield
  latency_lut.software_id.cache_clear()


def test_cached_latency_is_remeasured_after_a_builder_change(
    tmp_path, monkeypatch, fresh_software_id):
  del fresh_software_id
  path = str(tmp_path / "latency.jsonl")
  first = latency.LatencyMeasurer(config=FAST, cache_path=path)
  assert not first.measure(tiny_spec()).cached
  same = latency.LatencyMeasurer(config=FAST, cache_path=path)
  assert same.measure(tiny_spec()).cached and same.num_conversions == 0
  monkeypatch.setattr(builder, "BUILDER_VERSION", builder.BUILDER_VERSION + 1)
  latency_lut.software_id.cache_clear()
  changed = latency.LatencyMeasurer(config=FAST, cache_path=path)
  assert not changed.measure(tiny_spec()).cached
  assert changed.num_conversions == 1


def test_command_path_parses_benchmark_model_output(tmp_path):
  measurer = latency.LatencyMeasurer(
      "command", cache_path=str(tmp_path / "c.jsonl"), command=FAKE_COMMAND)
  result = measurer.measure(tiny_spec())
  assert result.source == "command" and not result.cached
  assert result.latency_ms == pytest.approx(1.05025)
  stats = result.stats
  assert (stats.min_ms, stats.max_ms, stats.median_ms) == pytest.approx(
      (1.002, 1.561, 1.044))
  assert stats.cv == pytest.approx(38 / 1050.25)
  assert stats.samples == 952
  assert measurer.measure(tiny_spec()).cached


def test_parser_reads_old_format_with_exponents():
  text = ("count=50 first=2990275 curr=2913402 min=2727568 max=3189954 "
          "avg=2.95034e+06 std=109798\n\nInference timings in us: Init: "
          "17187, First inference: 3512391, Warmup (avg): 3.51239e+06, "
          "Inference (avg): 2.95034e+06\n")
  stats = latency.parse_benchmark_output(text)
  assert stats.latency_ms == pytest.approx(2950.34)
  assert stats.min_ms == pytest.approx(2727.568)
  assert stats.median_ms is None


def test_template_without_placeholder_is_rejected():
  with pytest.raises(ValueError, match=r"no \{tflite\} placeholder"):
    latency.LatencyMeasurer("command", command="adb shell benchmark_model")
  with pytest.raises(ValueError, match="is empty"):
    latency.check_command_template("  ")


def test_failing_command_shows_exit_status_and_stderr(tiny_tflite):
  with pytest.raises(latency.CommandError,
                     match=r"(?s)status 1.*no devices/emulators found"):
    latency.run_latency_command(FAKE_COMMAND + " --fail", tiny_tflite)


def test_command_without_timing_line_is_a_clear_error(tiny_tflite):
  with pytest.raises(latency.CommandError,
                     match=r"(?s)no 'Inference timings.*Loaded model"):
    latency.run_latency_command(FAKE_COMMAND + " --no_timing", tiny_tflite)


def test_part_keys_match_the_sliced_parts(tiny_model):
  keys = latency_lut.part_keys(tiny_spec())
  parts = latency_lut.slice_parts(tiny_model)
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
    for key, _ in latency_lut.part_keys(spec)[1:-1]:
      layer = key.split("|")[2]
      assert arch.decode_block_string(layer).encode() == layer


def test_lut_fills_only_missing_parts_and_predicts():
  lut = latency_lut.LatencyLUT({"machine": "test"})
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
  with pytest.raises(latency_lut.MissingPartsError, match="fill"):
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
  first = latency_lut.LatencyLUT({"machine": "m"}, {"a": (0.1, 10)}, 0.001,
                                 [(0.1, 0.12)])
  first.save(path)
  second = latency_lut.LatencyLUT({"machine": "m"}, {"b": (0.2, 20)}, 0.001)
  second.save(path)
  loaded = latency_lut.LatencyLUT.load(path)
  assert loaded.entries == {"a": (0.1, 10), "b": (0.2, 20)}
  assert loaded.calibration == [(0.1, 0.12)]
  assert loaded.get_config() == second.get_config()
  (tmp_path / "bad.json").write_text('{"format": "other"}')
  with pytest.raises(ValueError, match="not a latency table"):
    latency_lut.LatencyLUT.load(str(tmp_path / "bad.json"))


def test_lut_mode_measures_then_answers_from_the_table(tmp_path):
  path = str(tmp_path / "lut.json")
  measurer = latency.LatencyMeasurer("lut", FAST, lut_path=path,
                                     lut_calibration=1)
  first = measurer.measure(tiny_spec())
  assert first.source == "lut" and not first.cached
  conversions = measurer.num_conversions
  assert conversions == 1 + 5 + 1  # overhead, parts, one whole student
  reloaded = latency.LatencyMeasurer("lut", FAST, lut_path=path,
                                     lut_calibration=1)
  second = reloaded.measure(tiny_spec())
  assert second.cached and reloaded.num_conversions == 0
  assert second.latency_ms == pytest.approx(first.latency_ms)
  assert second.latency_ms == pytest.approx(
      reloaded.lut.calibration[0][1])
  with pytest.raises(ValueError, match="measured with"):
    latency.LatencyMeasurer("lut", latency.LatencyConfig(threads=2),
                            lut_path=path)


def test_lut_mode_measures_students_whose_weights_overflow_the_cache():
  measurer = latency.LatencyMeasurer("lut", FAST, lut_max_weight_mb=0.01)
  result = measurer.measure(tiny_spec())
  assert result.source == "measured" and result.stats is not None
  assert measurer.num_conversions == 1 and not measurer.lut.entries
