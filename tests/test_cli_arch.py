"""Tests of the akd-arch app, run as a real subprocess."""

import json
import subprocess
import sys

import pytest


def run_arch(*args):
  return subprocess.run([sys.executable, "-m", "akd_tf.cli.arch", *args],
                        capture_output=True, text=True, timeout=120,
                        check=False)


def test_json_line_has_blocks_params_macs():
  result = run_arch("--preset=mnasnet_a1", "--image_size=224",
                    "--num_classes=1000", "--json")
  assert result.returncode == 0, result.stderr
  record = json.loads(result.stdout.strip().splitlines()[-1])
  assert record["blocks"][0] == "r1_k3_s11_e1_i32_o16_noskip"
  assert abs(record["params"] / 3.9e6 - 1) < 0.02
  assert abs(record["macs"] / 312e6 - 1) < 0.02


def test_arch_json_reproduces_blocks(tmp_path):
  first = run_arch("--blocks=r1_k3_s11_e1_i32_o16,r2_k5_s22_e3_i16_o24_se0.25",
                   "--image_size=28", "--channels=1", "--num_classes=10",
                   "--json")
  assert first.returncode == 0, first.stderr
  path = tmp_path / "arch.json"
  path.write_text(first.stdout.strip().splitlines()[-1])
  second = run_arch(f"--arch_json={path}", "--json")
  assert second.returncode == 0, second.stderr
  assert json.loads(second.stdout) == json.loads(first.stdout)


@pytest.mark.parametrize("args, message", [
    (["--blocks=r1_k4_s11_e1_i32_o16"],
     "--blocks: block 0 'r1_k4_s11_e1_i32_o16': kernel size k4"),
    (["--preset=mnasnet_a1", "--blocks=r1_k3_s11_e1_i32_o16"],
     "give exactly one of --preset, --blocks, --arch_json"),
    (["--arch_json=/nonexistent/arch.json"], "--arch_json:"),
    (["--preset=resnet50"], "--preset=resnet50: value should be one of"),
    (["--preset=mnasnet_a1", "--bogus=1"], "Unknown command line flag 'bogus'"),
])
def test_bad_input_is_a_clear_error_not_a_traceback(args, message):
  result = run_arch(*args)
  assert result.returncode != 0
  assert message in result.stderr
  assert "Traceback" not in result.stderr


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
