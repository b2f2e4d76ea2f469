"""akd_tf: Architecture-aware Knowledge Distillation on the MnasNet stack.

From Python:

  import akd_tf
  result = akd_tf.search(teacher=my_keras_model, dataset="fashion_mnist",
                         target_ms=0.15, num_candidates=50,
                         model_dir="runs/mine")
  records = akd_tf.load_history("runs/mine")

`search` is `akd_tf.api.search` and `load_history` is
`akd_tf.nas.history.load_history`; both are imported on first use, so
`import akd_tf` imports neither TensorFlow nor Keras.

Subpackages, lowest first (each imports only those before it):
  config_checks  (module) the validation loop of every config dataclass
  jsonl          (module) crash-safe JSON-lines appends, shared by processes
  memory         (module) what a long-lived process releases of each candidate
  space          block strings, the MnasNet search space, the Keras builder
  distill        data, teachers, the Distiller, training jobs
  latency        TFLite conversion, LiteRT timing, the device command, the
                 cache, the lookup table, and the measurer that picks
  oneshot        the one-shot proxy: a supernet of the space, trained once
  nas            controllers, rewards, history, evaluation, pools, the loop
  deploy         verified export, QAT, final training of a search's winner
  analysis       statistics of finished searches, rank statistics
  cli            absl apps: the only place that reads flags
  api            (module) `search`: akd-search as one Python call

Each subpackage's docstring names its modules and their public names.
"""

__version__ = "0.1.0"
__all__ = ["load_history", "search"]


def __getattr__(name):
  """`search` and `load_history`, imported on first use (PEP 562)."""
  # pylint: disable=g-import-not-at-top
  if name == "search":
    from akd_tf import api
    return api.search
  if name == "load_history":
    from akd_tf.nas import history
    return history.load_history
  raise AttributeError(f"module 'akd_tf' has no attribute '{name}'")
