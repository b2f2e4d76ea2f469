"""Tests of akd_tf.deploy.export (and the QAT child
akd_tf.deploy.export_qat) on digits."""

import importlib
import json
import logging
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from akd_tf.deploy import export
from akd_tf.distill import data
from akd_tf.latency import timing
from akd_tf.space import arch
from akd_tf.space import builder

BLOCKS = ("r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24")
FAST_TIMING = timing.LatencyConfig(warmup=2, runs=5, repeats=2, pause_ms=0)


def _config(output_dir, **kwargs):
  kwargs.setdefault("data", data.DataConfig("digits"))
  return export.ExportConfig(output_dir=str(output_dir),
                             calibration_samples=100, latency=FAST_TIMING,
                             **kwargs)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
  """A digits student with squeeze-excitation, trained for a few epochs,
  saved as student.keras with its arch.json beside it."""
  folder = tmp_path_factory.mktemp("student")
  spec = arch.ArchSpec(
      arch.decode_blocks(BLOCKS),
      arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                        head_size=32, depth_multiplier=0.25), (8, 8, 1))
  keras.utils.set_random_seed(0)
  model = builder.build_from_spec(spec)
  digits = data.load_data(data.DataConfig("digits"))
  model.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True))
  model.fit(digits.train.images, digits.train.labels, batch_size=32,
            epochs=8, verbose=0)
  path = str(folder / "student.keras")
  model.save(path)
  spec.to_json(str(folder / "arch.json"))
  return path


def test_int8_export_writes_artifacts_that_match_keras(student, tmp_path,
                                                       caplog):
  caplog.set_level(logging.INFO, logger="akd_tf")
  model, spec = export.load_student(student)
  assert spec.block_strings == BLOCKS
  report = export.export_student(model, _config(tmp_path, quantize="int8"),
                                 spec, model_path=student)
  # Without a `log`, its progress lines go to the module's logger.
  assert any(r.name == "akd_tf.deploy.export" for r in caplog.records)
  names = ("saved_model", "student_float.tflite", "student_int8.tflite",
           "export_report.json")
  assert all((tmp_path / name).exists() for name in names)
  assert json.loads((tmp_path / "export_report.json").read_text()) == report
  assert report["test_images"] == 359 and report["keras_top1"] > 0.5
  diffs = {k: v for k, v in report.items() if "diff" in k}
  assert set(diffs) == {"saved_model_max_abs_diff", "float_max_abs_diff",
                        "tflite_float_max_abs_diff"}
  assert all(v < 1e-4 for v in diffs.values()), diffs
  assert [k for k in report if "drop" in k] == ["int8_top1_drop"]
  assert report["int8_top1_drop"] <= 5.0
  artifacts = report["artifacts"]
  assert artifacts["tflite_int8"]["size_bytes"] < (
      artifacts["tflite_float"]["size_bytes"])
  assert artifacts["tflite_int8"]["latency_ms"] > 0
  assert artifacts["saved_model"]["latency_ms"] is None
  table = export.format_report(report)
  assert "tflite_int8" in table and "359 digits test images" in table


def test_saved_model_signature_has_named_input_and_output(student, tmp_path):
  model, _ = export.load_student(student)
  export.save_saved_model(model, str(tmp_path / "sm"))
  serve = tf.saved_model.load(str(tmp_path / "sm")).signatures[
      "serving_default"]
  assert list(serve.structured_input_signature[1]) == ["image"]
  assert list(serve.structured_outputs) == ["logits"]
  images = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
  np.testing.assert_allclose(
      export.saved_model_logits(str(tmp_path / "sm"), images),
      export.keras_logits(model, images), atol=1e-5)


def test_qat_export_rebuilds_with_tf_keras_and_reports_its_drop(student,
                                                                 tmp_path):
  model, spec = export.load_student(student)
  report = export.export_student(
      model, _config(tmp_path, quantize="qat", qat_train_size=256,
                     qat_batch_size=64), spec, model_path=student,
      log=lambda _: None)
  assert (tmp_path / "student_qat_int8.tflite").exists()
  assert report["qat_float_rebuild_max_abs_diff"] < 1e-4
  assert {"int8_top1_drop", "qat_top1_drop"} <= set(report)
  assert report["qat_top1_drop"] <= 10.0
  # The tf_keras child left this Keras 3 process untouched.
  assert "tensorflow_model_optimization" not in sys.modules
  assert not os.environ.get("TF_USE_LEGACY_KERAS")


def test_qat_module_refuses_to_load_into_a_keras3_process():
  with pytest.raises(ImportError, match="run it in its own process"):
    importlib.import_module("akd_tf.deploy.export_qat")


def test_load_student_from_arch_json_and_weights(student, tmp_path):
  model, _ = export.load_student(student)
  weights = str(tmp_path / "student.weights.h5")
  model.save_weights(weights)
  arch_json = os.path.join(os.path.dirname(student), "arch.json")
  rebuilt, spec = export.load_student(arch_json=arch_json,
                                      weights_path=weights)
  assert spec.block_strings == BLOCKS
  images = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
  np.testing.assert_allclose(export.keras_logits(rebuilt, images),
                             export.keras_logits(model, images), atol=1e-6)


def test_load_student_rejects_a_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="no.keras does not exist"):
    export.load_student(str(tmp_path / "no.keras"))


@pytest.mark.parametrize("name", ["notes.keras", "notes.txt"])
def test_load_student_rejects_a_file_that_is_not_a_keras_model(tmp_path,
                                                               name):
  path = tmp_path / name
  path.write_text("not a model")
  with pytest.raises(ValueError, match="is not a .*Keras model file"):
    export.load_student(str(path))


def test_export_rejects_data_of_another_input_shape(student, tmp_path):
  model, spec = export.load_student(student)
  config = _config(tmp_path, data=data.DataConfig("digits", image_size=16))
  with pytest.raises(ValueError, match=r"shape \(16, 16, 1\) but the model "
                     r"takes \(8, 8, 1\)"):
    export.export_student(model, config, spec, log=lambda _: None)
  assert not (tmp_path / "student_float.tflite").exists()


def test_export_config_rejects_unknown_quantization(tmp_path):
  with pytest.raises(ValueError, match="quantize='fp16' is not one of"):
    export.ExportConfig(output_dir=str(tmp_path), quantize="fp16")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
