"""Deployment: verified export, quantization-aware training, the winner.

Imports `akd_tf.space`, `akd_tf.distill`, `akd_tf.latency` and
`akd_tf.nas`. Kept free of imports itself: `python -m
akd_tf.deploy.export_qat` runs in a child process that must switch to
legacy Keras before Keras loads.

  export      ExportConfig, export_student (SavedModel, float and int8
              TFLite, each verified against the Keras model)
  export_qat  the QAT child process (tf_keras + TFMOT)
  finalize    finalize: final KD training and export of a search's winner
  pipeline    search_and_export: the search, then `finalize` of its winner
              (what akd-search runs)
"""
