"""Latency of students on TFLite/LiteRT: convert, time, predict, remember.

Imports `akd_tf.space` (and `akd_tf.config_checks`), never distill, search,
deploy or analysis. Lowest first:

  errors         LatencyError, ConversionError, CommandError
  native_output  captured_native_output: the C++ log of the converter and
                 of LiteRT, captured and quoted in errors
  convert        convert_to_tflite (float32 or int8), convert_for_timing
  timing         LatencyConfig, TimingStats, time_tflite (LiteRT
                 interpreter), measure_model
  device         an external timing command (adb + benchmark_model):
                 run_latency_command, parse_benchmark_output
  cache          LatencyCache (whole students, shared by processes),
                 cache_key, machine_id, software_id
  lut            LatencyLUT: per-part latencies and a predictor
  measurer       LatencyMeasurer: what the search calls ('measured', 'lut'
                 or 'command', with the cache), LatencyResult, MODES
"""
