"""Knowledge distillation: data, teachers, the Distiller, training jobs.

Imports `akd_tf.space` (and `akd_tf.config_checks`), never latency, search,
deploy or analysis.

  data                DataConfig, load_data (Fashion-MNIST, digits, tfds),
                      Split, make_dataset
  teacher             built-in teachers (TEACHERS, get_builtin_teacher),
                      load_teacher, check_teacher, teacher_logits
  distiller           Distiller (own train_step), check_alpha,
                      check_temperature
  candidate_training  one candidate on a proxy task: TrainConfig,
                      train_candidate, recalibrate_batch_norm,
                      top1_accuracy, accuracy_of
  training            akd-train's jobs: TrainJob, run_job, make_strategy,
                      fit_resumable
  diswot              RelationScorer: the training-free DisWOT score
"""
