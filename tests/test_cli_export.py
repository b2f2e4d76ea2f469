"""Tests of akd-export (akd_tf/cli/export.py)."""

import json
import os
import subprocess
import sys

import pytest

from akd_tf.space import arch
from akd_tf.space import builder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKS = ("r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24")


def _run(args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
             CUDA_VISIBLE_DEVICES="")
  return subprocess.run(args, env=env, capture_output=True, text=True,
                        timeout=300, check=False, cwd=ROOT)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
  """An untrained 8x8x1 digits student: student.keras, and the same model
  alone in a folder without arch.json."""
  folder = tmp_path_factory.mktemp("cli_student")
  spec = arch.ArchSpec(
      arch.decode_blocks(BLOCKS),
      arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                        head_size=32, depth_multiplier=0.25), (8, 8, 1))
  model = builder.build_from_spec(spec)
  model.save(str(folder / "student.keras"))
  spec.to_json(str(folder / "arch.json"))
  arch.ArchSpec(spec.blocks, spec.global_params, (16, 16, 1)).to_json(
      str(folder / "other_arch.json"))
  (folder / "alone").mkdir()
  model.save(str(folder / "alone" / "student.keras"))
  return folder


_BAD_FLAGS = r"""
import json, sys
from absl import app, flags
from akd_tf.cli import export
out = []
for argv in json.loads(sys.argv[1]):
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(["akd-export"] + argv)
    export.main(["akd-export"])
    out.append("no error")
  except (app.UsageError, flags.Error) as error:
    out.append(str(error))
print(json.dumps(out))
"""


def test_bad_inputs_get_usage_errors_naming_the_flag(student, tmp_path):
  not_a_model = tmp_path / "notes.keras"
  not_a_model.write_text("not a model")
  out = "--output_dir=" + str(tmp_path / "out")
  model = "--model=" + str(student / "student.keras")
  cases = [
      ([out, "--model=/no/such.keras"],
       "--model: /no/such.keras does not exist"),
      ([out, "--model=" + str(not_a_model)],
       f"--model: {not_a_model} is not a loadable Keras model file"),
      ([out, "--model=" + str(student / "arch.json")],
       "is not a Keras model file: expected a .keras file"),
      ([out, model, "--dataset=digits", "--image_size=16"],
       "--dataset: dataset 'digits' has images of shape (16, 16, 1) but the "
       "model takes (8, 8, 1)"),
      ([out, "--model=" + str(student / "alone" / "student.keras"),
        "--quantize=qat", "--dataset=digits"],
       "--arch_json: quantization-aware training rebuilds the student"),
      ([out, model, "--quantize=qat", "--dataset=digits",
        "--arch_json=" + str(student / "other_arch.json")],
       "--arch_json: the arch.json input shape (16, 16, 1) is not the "
       "model's (8, 8, 1)"),
      ([model], "--output_dir: required"),
      ([out], "--model: required"),
      ([out, model, "--weights=w.weights.h5"], "--weights: "),
      ([out, model, "--qat_epochs=0"], "--qat_epochs: 0 must be >= 1"),
      ([out, model, "--quantize=fp16"], "--quantize"),
      ([out, model, "--dataset=no_such_dataset_xyz"],
       "--dataset: unknown dataset"),
  ]
  proc = _run([sys.executable, "-c", _BAD_FLAGS,
               json.dumps([argv for argv, _ in cases])])
  assert proc.returncode == 0, proc.stderr[-3000:]
  messages = json.loads(proc.stdout.strip().splitlines()[-1])
  for (argv, expected), message in zip(cases, messages):
    assert expected in message, (argv, message)
  assert not (tmp_path / "out" / "student_float.tflite").exists()


def test_akd_export_prints_the_table_and_writes_the_report(student,
                                                           tmp_path):
  out = tmp_path / "export"
  proc = _run([sys.executable, "-m", "akd_tf.cli.export",
               f"--model={student / 'student.keras'}", "--quantize=int8",
               "--dataset=digits", "--calibration_samples=50",
               "--eval_size=100", "--repeats=1", f"--output_dir={out}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert lines[0].split()[:3] == ["artifact", "size", "(bytes)"]
  assert any(line.startswith("tflite_int8") for line in lines)
  printed = json.loads(lines[-1])
  report = json.loads((out / "export_report.json").read_text())
  assert printed["float_max_abs_diff"] == report["float_max_abs_diff"] < 1e-4
  assert printed["int8_top1_drop"] == report["int8_top1_drop"]
  assert report["test_images"] == 100


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
