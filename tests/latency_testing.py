"""What the latency tests share: a tiny student, fast timing, a fake device.

The fixtures `tiny_model` and `tiny_tflite` (conftest.py) build on these.
"""

import os
import sys

from akd_tf.latency import timing
from akd_tf.space import arch

FAKE = os.path.join(os.path.dirname(__file__), "fake_benchmark_model.py")
FAKE_COMMAND = f"{sys.executable} {FAKE} --graph={{tflite}} --num_threads=1"
FAST = timing.LatencyConfig(warmup=2, runs=10, repeats=2)
TINY_BLOCKS = ("r1_k3_s11_e1_i8_o8", "r2_k3_s22_e3_i8_o16_se0.25")
TINY_PARAMS = arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                                stem_size=8, head_size=32)


def tiny_spec(last_filters=16):
  """A two-block 28x28x1 student; `last_filters` varies its last block."""
  blocks = TINY_BLOCKS[:1] + (f"r2_k3_s22_e3_i8_o{last_filters}_se0.25",)
  return arch.ArchSpec(arch.decode_blocks(blocks), TINY_PARAMS, (28, 28, 1))
