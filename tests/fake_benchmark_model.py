"""A stand-in for `adb shell /data/local/tmp/benchmark_model` in tests.

  fake_benchmark_model.py --graph=model.tflite [--num_threads=1]
      [--fail] [--no_timing]

Checks that --graph names a TFLite flatbuffer (file identifier 'TFL3'),
then prints what TFLite's benchmark_model prints for it (a sample of a real
run, timings fixed: Inference (avg) 1050.25 us, min 1002 us, max 1561 us,
median 1044 us, std 38 us over 952 runs). --fail exits 1 with adb's error on
stderr; --no_timing stops before the timing lines, as a crashed run does.
"""

import os
import sys

SAMPLE = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [{threads}]
INFO: Graph: [{graph}]
INFO: #threads used for CPU inference: [{threads}]
INFO: Loaded model {graph}
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be \
completely executed by the delegate.
INFO: The input model file size (MB): {size_mb:.6g}
INFO: Initialized session in 5.678ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds \
but terminate if exceeding 150 seconds.
INFO: count=436 first=1234 curr=1102 min=1010 max=1987 avg=1100.5 std=95 \
p5=1020 median=1080 p95=1310

INFO: Running benchmark for at least 50 iterations and at least 1 seconds \
but terminate if exceeding 150 seconds.
INFO: count=952 first=1061 curr=1049 min=1002 max=1561 avg=1050.25 std=38 \
p5=1010 median=1044 p95=1118

INFO: Inference timings in us: Init: 5678, First inference: 1234, \
Warmup (avg): 1100.5, Inference (avg): 1050.25
INFO: Note: as the benchmark tool itself affects memory footprint, the \
following is only APPROXIMATE to the actual memory footprint of the model at \
runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=3.5 \
overall=10.2
"""


def main(argv):
  options = dict(arg[2:].split("=", 1) for arg in argv[1:] if "=" in arg)
  switches = {arg[2:] for arg in argv[1:] if "=" not in arg}
  if "fail" in switches:
    print("adb: no devices/emulators found", file=sys.stderr)
    return 1
  graph = options.get("graph")
  if not graph or not os.path.isfile(graph):
    print(f"ERROR: Could not open '{graph}'.", file=sys.stderr)
    return 1
  with open(graph, "rb") as f:
    header = f.read(8)
  if header[4:8] != b"TFL3":
    print(f"ERROR: '{graph}' is not a TFLite model.", file=sys.stderr)
    return 1
  text = SAMPLE.format(threads=options.get("num_threads", "1"), graph=graph,
                       size_mb=os.path.getsize(graph) / 2**20)
  if "no_timing" in switches:
    text = text[:text.index("INFO: Running benchmark")]
  sys.stdout.write(text)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
