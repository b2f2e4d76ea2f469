"""Single-path supernet training: only the path moves, KD or CE, resumable."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.distill import distiller
from akd_tf.distill import teacher as teacher_lib
from akd_tf.oneshot import cache as cache_lib
from akd_tf.oneshot import path_optimizer
from akd_tf.oneshot import sampling
from akd_tf.oneshot import student as student_lib
from akd_tf.oneshot import supernet as supernet_lib
from akd_tf.oneshot import trainer as trainer_lib
from akd_tf.space import arch
from akd_tf.space import search_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The first two blocks of the skeleton: every kind of decision (blocks of
# one and two layers, each layer choice, strides 1 and 2) at a fraction of
# the whole space's tracing time; digits' native 8x8 images and
# a stride-1 stem (at width 0.25 the students learn too slowly for the KD
# test to tell learning from noise).
SPACE = search_space.SearchSpace(search_space.MOBILENET_V2_SKELETON[:2])
# One block (two layers at most), for what does not depend on the size.
ONE_BLOCK = search_space.SearchSpace(search_space.MOBILENET_V2_SKELETON[:1])
PARAMS = arch.GlobalParams(num_classes=10, head_size=64,
                           batch_norm_momentum=0.9, stem_strides=1)


@pytest.fixture(scope="module")
def digits():
  return data_lib.load_data(data_lib.DataConfig("digits"))


@pytest.fixture(scope="module")
def logits(digits):
  """A built-in teacher's logits, trained 3 epochs on the digits (98%)."""
  tf.keras.utils.set_random_seed(0)
  teacher = teacher_lib.build_teacher("resnet_wide", digits.input_shape,
                                      digits.num_classes)
  teacher_lib.train_teacher(teacher, digits, teacher_lib.TeacherRecipe(
      epochs=3, batch_size=64))
  return teacher_lib.teacher_logits(teacher, digits.train)


def _trainer(digits, config, teacher_logits=None, space=SPACE):
  tf.keras.utils.set_random_seed(config.seed)
  net = supernet_lib.Supernet(space, PARAMS, digits.input_shape)
  return trainer_lib.SupernetTrainer(net, config, digits.train.images,
                                      digits.train.labels, teacher_logits)


def _path_masks(net, actions):
  """Per weight of the supernet, a mask of the elements the path uses."""
  used = {id(v): np.zeros(v.shape, bool) for v in net.weights}
  for piece in net.path_weight_slices(actions):
    used[id(piece.variable)][piece.positions().ravel()] = True
  return [used[id(v)] for v in net.weights]


@pytest.fixture(scope="module")
def kd_trainer(digits, logits):
  """A trainer by KD (one trace shared by the tests using it)."""
  return _trainer(digits, trainer_lib.SupernetTrainConfig(
      steps=100, batch_size=32, kd_alpha=0.9, learning_rate=2e-2,
      lr_schedule="constant"), teacher_logits=logits)


def test_a_step_changes_only_the_weights_of_its_path(kd_trainer):
  trainer = kd_trainer
  net = trainer.supernet
  # Earlier steps on other paths leave Adam momentum on almost every
  # weight; a plain Adam step would then move weights off the path too.
  largest = tuple(n - 1 for n in SPACE.num_choices)
  for actions in (largest, SPACE.sample(1), SPACE.sample(2)):
    trainer.train_step([actions])
  path = SPACE.sample(3)
  before = [v.numpy().copy() for v in net.weights]
  trainer.train_step([path])
  moved_on_path, on_path = 0, 0
  for variable, old, used in zip(net.weights, before, _path_masks(net, path)):
    moved = variable.numpy() != old
    off_path = np.flatnonzero(moved & ~used)
    assert off_path.size == 0, (
        f"{variable.path}: {off_path.size} elements off the path moved")
    moved_on_path += int(np.sum(moved & used))
    on_path += int(used.sum())
  assert moved_on_path > 0.6 * on_path


def test_path_optimizer_leaves_zero_gradient_elements_and_their_state():
  variable = tf.Variable(np.ones(4, np.float32))
  optimizer = path_optimizer.make_path_optimizer(
      candidate_training.TrainConfig(), 10)
  optimizer.build([variable])
  # The value and Adam's two moments of each element.
  state = [variable] + [v for v in optimizer.variables if v.shape == (4,)]
  assert len(state) == 3
  optimizer.apply_gradients([(tf.constant([1.0, 1.0, 1.0, 1.0]), variable)])
  after_first = np.stack([v.numpy() for v in state])
  optimizer.apply_gradients([(tf.constant([1.0, 0.0, 1.0, 0.0]), variable)])
  after_second = np.stack([v.numpy() for v in state])
  np.testing.assert_array_equal(after_second[:, [1, 3]],
                                after_first[:, [1, 3]])
  assert (after_second[:, [0, 2]] != after_first[:, [0, 2]]).all()


def test_one_trace_serves_every_training_path_and_number_of_paths(
    kd_trainer):
  for _ in range(3):
    kd_trainer.train_step()
  # A warm-up's single path, then a sandwich's three: still one trace.
  kd_trainer.train_step([SPACE.sample(5)])
  kd_trainer.train_step([SPACE.sample(6), SPACE.sample(7), SPACE.sample(8)])
  assert kd_trainer.tracing_count == 1


def test_kd_training_moves_the_path_towards_the_teacher(kd_trainer):
  path = SPACE.sample(0)
  losses = [kd_trainer.train_step([path])["distillation_loss"]
            for _ in range(60)]
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), losses


def test_a_ce_step_on_a_path_is_the_stand_alone_students_step(digits):
  # MBConv e3 (expansion slices), kernel 3 (centre slices), SE, width x0.75,
  # two layers with a residual on the second; no dropout.
  actions = (2, 0, 1, 0, 0, 1)
  config = trainer_lib.SupernetTrainConfig(
      steps=10, batch_size=32, optimizer="sgd", learning_rate=0.05,
      kd_alpha=0.0)
  params = dataclasses.replace(PARAMS, dropout_rate=0.0)
  tf.keras.utils.set_random_seed(0)
  net = supernet_lib.Supernet(ONE_BLOCK, params, digits.input_shape)
  trainer = trainer_lib.SupernetTrainer(net, config, digits.train.images,
                                         digits.train.labels)
  student = student_lib.inherit_student(net, actions)
  index = sampling.batch_indices(digits.train.size, 32, config.seed, 0)
  images = digits.train.images[index]
  labels = digits.train.labels[index]
  before = [w.numpy().copy() for w in student.weights]
  loss = distiller.Distiller(student, alpha=0.0)
  optimizer = candidate_training.make_optimizer(config.train_config(),
                                               config.steps)
  with tf.GradientTape() as tape:
    total = loss.compute_losses(labels, student(images, training=True))[0]
  optimizer.apply_gradients(zip(
      tape.gradient(total, student.trainable_variables),
      student.trainable_variables))

  result = trainer.train_step([actions])
  assert result["distillation_loss"] == 0.0
  assert result["loss"] == pytest.approx(float(total), rel=1e-6)
  stepped = student_lib.inherit_student(net, actions)
  for expected, got in zip(student.weights, stepped.weights):
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0,
                               atol=2e-6, err_msg=expected.path)
  assert max(np.abs(w.numpy() - b).max()
             for w, b in zip(student.weights, before)) > 1e-3


@pytest.mark.parametrize("onednn", ["1", "0"])
def test_a_paths_gradients_through_the_whole_space_are_its_students(onednn):
  # TensorFlow's fused BatchNormalization (FusedBatchNormV3) got the
  # gradient of some channels wrong here (the head's channel 211 under
  # oneDNN: half the student's), so supernet training followed other
  # gradients than its students'. Run in a child: oneDNN is fixed at import.
  script = textwrap.dedent("""
      import dataclasses, sys
      import numpy as np, tensorflow as tf
      from akd_tf.distill import data as data_lib
      from akd_tf.oneshot import student as student_lib
      from akd_tf.oneshot import supernet as supernet_lib
      from akd_tf.space import arch, search_space
      data = data_lib.load_data(data_lib.DataConfig("fashion_mnist",
                                                    train_size=64))
      space = search_space.SearchSpace()
      params = arch.GlobalParams(num_classes=10, head_size=256,
                                 dropout_rate=0.0)
      tf.keras.utils.set_random_seed(0)
      net = supernet_lib.Supernet(space, params, data.input_shape)
      images, labels = data.train.images[:32], data.train.labels[:32]
      def loss(logits):
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
      worst = 0.0
      for seed in (1, 2):
        path = space.sample(np.random.default_rng(seed))
        student = student_lib.inherit_student(net, path)
        with tf.GradientTape() as tape:
          expected_loss = loss(student(images, training=True))
        expected = dict(zip(
            [w.path for w in student.trainable_variables],
            tape.gradient(expected_loss, student.trainable_variables)))
        with tf.GradientTape() as tape:
          got_loss = loss(net.forward(images, net.path_tensor(path), "train"))
        got = {id(v): g for v, g in zip(
            net.trainable_variables,
            tape.gradient(got_loss, net.trainable_variables))}
        for piece in net.path_weight_slices(path):
          weight = getattr(student.get_layer(piece.layer), piece.attribute)
          if weight.path in expected:
            difference = np.abs(
                got[id(piece.variable)].numpy()[piece.positions()] -
                expected[weight.path].numpy()).max()
            worst = max(worst, float(difference))
      print("worst", worst)
      """)
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, PYTHONPATH=ROOT)
  done = subprocess.run([sys.executable, "-c", script], env=env,
                        capture_output=True, text=True, timeout=600,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  worst = float(done.stdout.split("worst")[-1])
  assert worst < 1e-5


def test_a_step_of_several_paths_applies_the_sum_of_their_gradients(digits):
  # Plain SGD at a constant rate, no dropout: a step moves the weights by
  # -lr x the gradient, so one step of two paths must move them by the sum
  # of what a step of each path alone moves them.
  config = trainer_lib.SupernetTrainConfig(
      steps=10, batch_size=32, optimizer="sgd", learning_rate=0.05,
      lr_schedule="constant", kd_alpha=0.0)
  params = dataclasses.replace(PARAMS, dropout_rate=0.0)
  paths = [(2, 1, 1, 0, 2, 1), (1, 0, 0, 1, 0, 0)]

  def stepped(step_paths):
    tf.keras.utils.set_random_seed(0)
    net = supernet_lib.Supernet(ONE_BLOCK, params, digits.input_shape)
    before = [v.numpy().copy() for v in net.trainable_variables]
    trainer = trainer_lib.SupernetTrainer(
        net, config, digits.train.images, digits.train.labels)
    trainer.train_step(step_paths)
    return [v.numpy() - b for v, b in zip(net.trainable_variables, before)]

  both = stepped(paths)
  first, second = stepped(paths[:1]), stepped(paths[1:])
  for got, a, b in zip(both, first, second):
    np.testing.assert_allclose(got, a + b, rtol=0, atol=1e-6)
  assert max(np.abs(a).max() for a in first) > 1e-3
  assert max(np.abs(b).max() for b in second) > 1e-3


def test_sandwich_paths_are_the_largest_the_smallest_then_uniform():
  paths = sampling.step_paths(SPACE, "sandwich", 4, 0, 0, 5)
  assert paths[:2] == [sampling.largest_path(SPACE),
                       sampling.smallest_path(SPACE)]
  assert len(paths) == 4 and paths[2] != paths[3]
  largest = SPACE.decode(paths[0])
  assert all(b.expand_ratio == 6 and b.kernel_size == 5 for b in largest)
  smallest = SPACE.decode(paths[1])
  assert all(b.expand_ratio == 1 and b.kernel_size == 3 and not b.se_ratio
             for b in smallest)


def test_progressive_neighbours_redraw_more_decisions_until_uniform():
  # 10 warm-up steps, then 100: a neighbour redraws 1 decision at step 10,
  # and all of them from step 10 + 75 on.
  steps = lambda step: sampling.step_paths(SPACE, "progressive", 3, 10, 0,
                                           step, steps=110)
  largest = sampling.largest_path(SPACE)
  changed = lambda step: max(sum(a != b for a, b in zip(path, largest))
                             for path in steps(step)[1:])
  assert steps(9) == [largest]
  assert steps(10)[0] == largest and len(steps(10)) == 3
  assert changed(10) == 1
  assert [changed(s) <= 1 + (s - 10) * (SPACE.num_decisions - 1) / 75
          for s in range(10, 85, 5)] == [True] * 15
  # Uniform at the end: on average, a redrawn decision keeps the largest
  # path's choice with probability 1 / its choices (under 1/2).
  late = [changed(s) for s in range(90, 110)]
  assert np.mean(late) > SPACE.num_decisions / 3
  with pytest.raises(ValueError, match="needs the run's steps"):
    sampling.step_paths(SPACE, "progressive", 2, 0, 0, 5)


def test_warmup_steps_train_the_largest_path_alone():
  warm = lambda step: sampling.step_paths(SPACE, "sandwich", 4, 3, 0, step)
  assert warm(2) == [sampling.largest_path(SPACE)]
  assert len(warm(3)) == 4


@pytest.mark.parametrize("rule", ["sandwich", "progressive"])
def test_a_sandwich_or_progressive_step_of_one_path_names_paths_per_step(
    rule):
  with pytest.raises(ValueError, match="paths_per_step=1 must be >= 1"):
    trainer_lib.SupernetTrainConfig(sampling=rule, paths_per_step=1)


def test_kd_training_without_teacher_logits_names_kd_alpha(digits):
  with pytest.raises(ValueError, match="kd_alpha=0.9 needs the teacher"):
    _trainer(digits, trainer_lib.SupernetTrainConfig(kd_alpha=0.9))


def test_training_path_and_batch_are_functions_of_seed_and_step():
  paths = lambda step: sampling.step_paths(SPACE, "uniform", 1, 0, 3, step)
  assert paths(17) == paths(17)
  assert paths(17) != paths(18)
  np.testing.assert_array_equal(sampling.batch_indices(100, 8, 1, 30),
                                sampling.batch_indices(100, 8, 1, 30))


_CHILD = textwrap.dedent("""
    import json, sys, time
    from akd_tf.distill import data
    from akd_tf.oneshot import cache as cache_lib
    from akd_tf.oneshot import trainer as trainer_lib
    from akd_tf.space import arch, search_space
    cache_dir, log_path, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    digits = data.load_data(data.DataConfig("digits"))
    space = search_space.SearchSpace(search_space.MOBILENET_V2_SKELETON[:1])
    params = arch.GlobalParams(**json.loads(sys.argv[4]))
    config = trainer_lib.SupernetTrainConfig(**json.loads(sys.argv[5]))
    log = open(log_path, "a")
    def on_step(result):
      log.write(json.dumps([result["step"], result["paths"],
                            result["loss"]]) + "\\n")
      log.flush()
      time.sleep(pause)
    _, info = cache_lib.get_trained_supernet(
        space, params, digits.input_shape, digits.train, config, cache_dir,
        on_step=on_step)
    log.write(json.dumps({"resumed_from": info.resumed_from}) + "\\n")
    """)
_RESUME_CONFIG = trainer_lib.SupernetTrainConfig(
    steps=30, batch_size=32, kd_alpha=0.0, checkpoint_every=5)


def _run_child(cache_dir, log_path, pause):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
             CUDA_VISIBLE_DEVICES="")
  return subprocess.Popen(
      [sys.executable, "-c", _CHILD, str(cache_dir), str(log_path),
       str(pause), json.dumps(PARAMS.get_config()),
       json.dumps(_RESUME_CONFIG.get_config())],
      env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)


def _read_log(path):
  lines = [json.loads(line) for line in path.read_text().splitlines()]
  return [l for l in lines if isinstance(l, list)], [
      l for l in lines if isinstance(l, dict)]


def test_training_killed_by_sigkill_resumes_as_an_uninterrupted_run(
    digits, tmp_path):
  cache_dir, log_path = tmp_path / "cache", tmp_path / "steps.jsonl"
  first = _run_child(cache_dir, log_path, pause=0.1)
  deadline = time.monotonic() + 120
  while first.poll() is None:
    assert time.monotonic() < deadline, "no 12th step in 120 s"
    if log_path.exists() and len(log_path.read_text().splitlines()) >= 12:
      break
    time.sleep(0.05)
  os.kill(first.pid, signal.SIGKILL)
  output = first.communicate(timeout=60)[0]
  assert first.returncode == -signal.SIGKILL, output[-3000:]
  killed_steps, _ = _read_log(log_path)
  second = _run_child(cache_dir, log_path, pause=0.0)
  output = second.communicate(timeout=180)[0]
  assert second.returncode == 0, output[-3000:]
  steps, (done,) = _read_log(log_path)
  resumed = steps[len(killed_steps):]
  # From the last checkpoint: at most checkpoint_every steps are redone.
  start = done["resumed_from"]
  assert start % 5 == 0 and 0 < start <= len(killed_steps)
  assert [s for s, _, _ in resumed] == list(range(start, 30))

  # The same run uninterrupted, here: the same paths, losses and weights.
  uninterrupted = []
  net, info = cache_lib.get_trained_supernet(
      ONE_BLOCK, PARAMS, digits.input_shape, digits.train, _RESUME_CONFIG,
      str(tmp_path / "other"), on_step=lambda r: uninterrupted.append(
          [r["step"], [list(p) for p in r["paths"]], r["loss"]]))
  assert info.resumed_from == 0 and not info.cached
  for got, expected in ((killed_steps, uninterrupted[:len(killed_steps)]),
                        (resumed, uninterrupted[start:])):
    assert [(s, a) for s, a, _ in got] == [(s, a) for s, a, _ in expected]
    np.testing.assert_allclose([l for _, _, l in got],
                               [l for _, _, l in expected], rtol=1e-5)
  cached, info = cache_lib.get_trained_supernet(
      ONE_BLOCK, PARAMS, digits.input_shape, digits.train, _RESUME_CONFIG,
      str(cache_dir))
  assert info.cached
  for a, b in zip(cached.weights, net.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5)


def test_cache_key_covers_the_teacher_and_the_recipe(digits, logits):
  key = lambda config, teacher=logits: cache_lib.cache_key(
      SPACE, PARAMS, digits.input_shape, digits.train, config, teacher)
  kd = trainer_lib.SupernetTrainConfig()
  assert key(kd) != key(kd, logits + 1.0)
  assert key(kd) != key(trainer_lib.SupernetTrainConfig(kd_alpha=0.0))
  assert key(kd) != key(trainer_lib.SupernetTrainConfig(steps=999))
  assert key(kd) == key(trainer_lib.SupernetTrainConfig(checkpoint_every=7))


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
