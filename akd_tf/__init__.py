"""akd_tf: Architecture-aware Knowledge Distillation on the MnasNet stack.

Subpackages, lowest first (each imports only those before it):
  config_checks  (module) the validation loop of every config dataclass
  jsonl          (module) crash-safe JSON-lines appends, shared by processes
  memory         (module) what a long-lived process releases of each candidate
  space          block strings, the MnasNet search space, the Keras builder
  distill        data, teachers, the Distiller, training jobs
  latency        TFLite conversion, LiteRT timing, the device command, the
                 cache, the lookup table, and the measurer that picks
  search         controllers, rewards, history, evaluation, pools, the loop
  deploy         verified export, QAT, final training of a search's winner
  analysis       statistics of finished searches, rank statistics
  cli            absl apps: the only place that reads flags

Each subpackage's docstring names its modules and their public names.
"""

__version__ = "0.1.0"
