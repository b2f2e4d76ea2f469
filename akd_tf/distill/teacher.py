"""Teachers: load a user's Keras model, or train and cache a built-in one.

A teacher is a `keras.Model` mapping float32 images in [0, 1] (see
`akd_tf.distill.data`) to class logits (distillation softens them by a
temperature), or to class probabilities when the user says so
(`teacher_output='probabilities'`, `--teacher_output=probabilities`): then
its log-probabilities serve as logits, since softmax(log p / T) is exactly
the teacher's distribution softened by T. Which of the two a teacher
outputs is decided from its behaviour on real training images (every row
non-negative and summing to 1: probabilities), never from its last layer:
a softmax hides inside nested models, `keras.ops.softmax` and SavedModels.

  load_teacher(path)        a `.keras` file (safe_mode=True: no pickled
                            Python, no custom code unless the user registered
                            it with keras.saving) or a SavedModel folder
  check_teacher(model, ...) input shape, class count and outputs checked
                            against the data; a clear ValueError otherwise
  check_teacher_output(...) outputs on a batch of images checked against
                            teacher_output ('logits' or 'probabilities')
  outputs_as_logits(...)    a teacher's outputs as logits (log-probabilities
                            for a probabilities teacher)
  sample_images(split)      the batch of training images checks run on
  build_teacher(name, ...)  an untrained built-in teacher:
                              resnet_wide  wide, shallow residual CNN
                              cnn_deep     deep, narrow plain (VGG-like) CNN
  get_builtin_teacher(...)  a built-in teacher trained on the data, trained
                            once and then loaded from a cache folder
  teacher_logits(...)       a teacher's logits on a split, computed once and
                            cached on disk (.npy) by teacher weights and data

No pretrained weights can be downloaded here, so the built-in teachers are
small enough to train in about two minutes on two CPU cores on
Fashion-MNIST (`TeacherRecipe`'s defaults).

Public names: TEACHERS, TEACHER_OUTPUTS, TeacherRecipe, TeacherInfo,
build_teacher, load_teacher, check_teacher, check_teacher_output,
outputs_as_logits, sample_images, train_teacher, get_builtin_teacher,
teacher_logits, weights_hash.
"""

import dataclasses
import hashlib
import json
import os
import time
from typing import Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from akd_tf import jsonl
from akd_tf.distill import data as data_lib

__all__ = ["TEACHERS", "TEACHER_OUTPUTS", "TeacherInfo", "TeacherRecipe",
           "build_teacher", "check_teacher", "check_teacher_output",
           "get_builtin_teacher", "load_teacher", "outputs_as_logits",
           "sample_images", "teacher_logits", "train_teacher",
           "weights_hash"]

TEACHERS = ("resnet_wide", "cnn_deep")
TEACHER_OUTPUTS = ("logits", "probabilities")
# Training images a teacher's outputs are checked on, and how far a row's
# sum may be from 1 for the outputs to count as probabilities.
_CHECK_IMAGES = 64
_SUM_TOLERANCE = 1e-3
# Probabilities are clipped to [this, 1] before the log: the smallest normal
# float32, so only exact zeros (and rounding below 0) are changed. A float32
# softmax keeps its small probabilities to full relative precision, so
# clipping them at 1e-7 (Keras' epsilon) would flatten the tempered
# distribution of a confident teacher (p = 1e-12 becomes 1e-7, 18x larger
# after the T = 4 root).
_MIN_PROBABILITY = float(np.finfo(np.float32).tiny)
# Bump when a built-in architecture changes, so cached teachers are rebuilt.
_ARCH_VERSION = 1
_BN_MOMENTUM = 0.9


def _conv_bn(x, filters, strides, name, act=True):
  x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same",
                          use_bias=False, kernel_initializer="he_normal",
                          name=f"{name}_conv")(x)
  x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM,
                                      name=f"{name}_bn")(x)
  if act:
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
  return x


def _resnet_wide(inputs, widths: Sequence[int], stem: int):
  """A stem, then one wide basic residual block per stride-2 stage."""
  x = _conv_bn(inputs, stem, 1, "stem")
  for i, width in enumerate(widths):
    name = f"stage{i}"
    y = _conv_bn(x, width, 2, f"{name}_a")
    y = _conv_bn(y, width, 1, f"{name}_b", act=False)
    shortcut = keras.layers.Conv2D(width, 1, strides=2, use_bias=False,
                                   name=f"{name}_proj_conv")(x)
    shortcut = keras.layers.BatchNormalization(
        momentum=_BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    x = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    x = keras.layers.ReLU(name=f"{name}_out")(x)
  return x


def _cnn_deep(inputs, widths: Sequence[int], depth: int):
  """`depth` narrow 3x3 convolutions per stage, max-pooling between."""
  x = inputs
  for i, width in enumerate(widths):
    for j in range(depth):
      x = _conv_bn(x, width, 1, f"stage{i}_{j}")
    if i < len(widths) - 1:
      x = keras.layers.MaxPooling2D(name=f"stage{i}_pool")(x)
  return x


def build_teacher(name: str, input_shape: Sequence[int],
                  num_classes: int) -> keras.Model:
  """Builds an untrained built-in teacher that outputs logits.

  Args:
    name: 'resnet_wide' or 'cnn_deep'.
    input_shape: (height, width, channels).
    num_classes: Number of logits.

  Raises:
    ValueError: unknown name; the message lists the built-in teachers.
  """
  if name not in TEACHERS:
    raise ValueError(f"unknown built-in teacher '{name}'; choose one of "
                     f"{list(TEACHERS)}")
  inputs = keras.Input(shape=tuple(input_shape), name="image")
  if name == "resnet_wide":
    x = _resnet_wide(inputs, widths=(64, 128), stem=32)
  else:
    x = _cnn_deep(inputs, widths=(16, 32, 64), depth=3)
  x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  outputs = keras.layers.Dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=name)


def _load_saved_model(path: str) -> keras.Model:
  """Wraps a SavedModel's serving function in a functional Keras model."""
  loaded = tf.saved_model.load(path)
  for endpoint in ("serve", "serving_default"):
    fn = getattr(loaded, endpoint, None) if endpoint == "serve" else (
        loaded.signatures.get(endpoint))
    if fn is None:
      continue
    concrete = (fn if endpoint == "serving_default" else
                fn.concrete_functions[0])
    specs = tf.nest.flatten(concrete.structured_input_signature)
    if len(specs) != 1:
      raise ValueError(f"{path}: endpoint '{endpoint}' takes {len(specs)} "
                       "inputs; a teacher takes one image tensor")
    inputs = keras.Input(shape=tuple(specs[0].shape[1:]), name="image",
                         dtype=specs[0].dtype.name)
    outputs = keras.layers.TFSMLayer(path, call_endpoint=endpoint,
                                     trainable=False, name="saved_model")(
                                         inputs)
    if isinstance(outputs, dict):
      if len(outputs) != 1:
        raise ValueError(f"{path}: endpoint '{endpoint}' returns "
                         f"{sorted(outputs)}; a teacher returns one tensor")
      outputs = next(iter(outputs.values()))
    return keras.Model(inputs, outputs, name="saved_model_teacher")
  raise ValueError(f"{path}: SavedModel has no 'serve' function or "
                   "'serving_default' signature")


def load_teacher(path: str) -> keras.Model:
  """Loads a teacher from a `.keras` file or a SavedModel folder.

  `.keras` files load with `safe_mode=True`: a file that would run pickled
  Python (a Lambda layer's bytecode) is refused. Custom layers load only
  when the user registered them (`keras.saving.register_keras_serializable`).

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: `path` is neither a Keras model file nor a SavedModel, or
      does not hold a model.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"teacher {path} does not exist")
  if os.path.isdir(path):
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
      raise ValueError(f"teacher {path} is a folder without saved_model.pb: "
                       "give a .keras file or a SavedModel folder")
    return _load_saved_model(path)
  if not path.endswith(".keras"):
    raise ValueError(f"teacher {path}: expected a .keras file or a "
                     "SavedModel folder")
  try:
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
  except Exception as error:  # pylint: disable=broad-except
    raise ValueError(f"teacher {path} is not a loadable Keras model file: "
                     f"{type(error).__name__}: {error}") from None
  if not isinstance(model, keras.Model):
    raise ValueError(f"teacher {path} holds a {type(model).__name__}, not a "
                     "keras.Model")
  return model


def _check_teacher_output_name(teacher_output: str) -> None:
  if teacher_output not in TEACHER_OUTPUTS:
    raise ValueError(f"teacher_output='{teacher_output}' is not one of "
                     f"{TEACHER_OUTPUTS} (--teacher_output)")


def sample_images(split: data_lib.Split,
                  count: int = _CHECK_IMAGES) -> np.ndarray:
  """The first `count` images of `split`: what teacher checks run on."""
  if split.images is not None:
    return split.images[:count]
  images, _ = next(iter(split.dataset().take(count).batch(count)))
  return images.numpy()


def check_teacher_output(model: keras.Model, images,
                         teacher_output: str = "logits") -> None:
  """Checks from its behaviour that `model` outputs what it is said to.

  The teacher runs on `images` (real training images, see `sample_images`);
  its outputs are probabilities when every row is non-negative and sums to
  1 within 1e-3, and logits otherwise.

  Args:
    model: The teacher.
    images: A batch of the data's images.
    teacher_output: 'logits' or 'probabilities': what the user says the
      teacher outputs.

  Raises:
    ValueError: unknown teacher_output, a teacher said to output logits
      that outputs probabilities, or one said to output probabilities that
      does not; the message names `--teacher_output` and the fix.
  """
  _check_teacher_output_name(teacher_output)
  outputs = np.asarray(keras.ops.convert_to_numpy(
      model(images, training=False)), np.float64)
  sums = outputs.sum(axis=-1)
  probabilities = bool(outputs.size) and bool(
      (outputs >= 0).all() and (np.abs(sums - 1.0) <= _SUM_TOLERANCE).all())
  seen = f"on {len(outputs)} images of the data"
  if teacher_output == "logits" and probabilities:
    raise ValueError(
        f"teacher '{model.name}' outputs probabilities, not logits: {seen} "
        "every row is non-negative and sums to 1, as after a softmax. "
        "Distillation softens logits; pass --teacher_output=probabilities "
        "(teacher_output='probabilities') to distill from its "
        "log-probabilities, or save the teacher without its final softmax")
  if teacher_output == "probabilities" and not probabilities:
    raise ValueError(
        f"--teacher_output=probabilities, but teacher '{model.name}' does "
        f"not output probabilities: {seen} its rows sum to "
        f"{sums.min():.4g}..{sums.max():.4g} and its smallest output is "
        f"{outputs.min():.4g}; a teacher that outputs logits needs "
        "--teacher_output=logits")


def outputs_as_logits(outputs, teacher_output: str):
  """A teacher's outputs as logits, to be softened by a temperature.

  Logits are returned as they are. Probabilities p become log(p), clipped
  to [smallest normal float32, 1] first (only exact zeros change): since
  softmax(log p / T) = p^(1/T) / sum(p^(1/T)), that is exactly the
  teacher's distribution softened by T. Applied wherever teacher logits are
  computed: online in `akd_tf.distill.distiller.Distiller`, cached in
  `teacher_logits`.

  Args:
    outputs: (batch, classes) outputs of the teacher (tensor or array).
    teacher_output: 'logits' or 'probabilities'.

  Returns:
    float32 logits (the outputs unchanged for 'logits').
  """
  _check_teacher_output_name(teacher_output)
  if teacher_output == "logits":
    return outputs
  probabilities = keras.ops.cast(outputs, "float32")
  return keras.ops.log(keras.ops.clip(probabilities, _MIN_PROBABILITY, 1.0))


def check_teacher(model: keras.Model, input_shape: Sequence[int],
                  num_classes: int, dataset: str = "the data", *,
                  images, teacher_output: str = "logits") -> None:
  """Checks that `model` can teach students on this data.

  Args:
    model: The teacher.
    input_shape: (height, width, channels) of the data's images.
    num_classes: The data's class count.
    dataset: The data's name, for messages.
    images: A batch of the data's training images (`sample_images`): the
      teacher's outputs on them decide whether it outputs probabilities.
    teacher_output: 'logits' or 'probabilities': what the user says the
      teacher outputs (see `check_teacher_output`).

  Raises:
    ValueError: the teacher expects another image shape, outputs another
      number of classes, or outputs probabilities when said to output
      logits (or the reverse).
  """
  if not isinstance(model, keras.Model):
    raise ValueError(f"the teacher must be a keras.Model, got "
                     f"{type(model).__name__}")
  expected = tuple(model.input_shape[1:])
  if len(expected) != len(input_shape) or any(
      e is not None and e != d for e, d in zip(expected, input_shape)):
    raise ValueError(f"teacher expects input images of shape {expected} "
                     f"but {dataset} has images of shape {tuple(input_shape)}"
                     "; rebuild the teacher for this shape or set "
                     "image_size to match it")
  out_shape = model.output_shape
  if not isinstance(out_shape, tuple) or len(out_shape) != 2:
    raise ValueError(f"teacher output shape {out_shape}: expected one "
                     "(batch, classes) tensor of logits")
  if out_shape[-1] != num_classes:
    raise ValueError(f"teacher outputs {out_shape[-1]} classes but {dataset} "
                     f"has {num_classes}")
  check_teacher_output(model, images, teacher_output)


@dataclasses.dataclass(frozen=True)
class TeacherRecipe:
  """How a built-in teacher is trained (part of its cache key).

  Adam with a cosine-decayed learning rate, on the whole training split.
  """

  epochs: int = 3
  batch_size: int = 128
  learning_rate: float = 2e-3
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class TeacherInfo:
  """What training a built-in teacher gave (stored beside the model).

  Attributes:
    name: Built-in teacher name.
    path: Where the trained `.keras` model is cached.
    params: Parameter count.
    train_seconds: Wall time of training (when it was trained, not loaded).
    minival_accuracy: Accuracy on the data's minival split.
    cached: True when this call loaded it instead of training it.
  """

  name: str
  path: str
  params: int
  train_seconds: float
  minival_accuracy: float
  cached: bool = False


def _compile_for_ce(model: keras.Model, learning_rate, steps: int) -> None:
  schedule = keras.optimizers.schedules.CosineDecay(learning_rate,
                                                    max(1, steps))
  model.compile(optimizer=keras.optimizers.Adam(schedule),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy(
                    name="accuracy")],
                jit_compile=False)


def train_teacher(model: keras.Model, data: data_lib.Data,
                  recipe: TeacherRecipe = TeacherRecipe(),
                  verbose: int = 0,
                  callbacks: Sequence[keras.callbacks.Callback] = ()
                  ) -> Tuple[float, float]:
  """Trains `model` with cross-entropy on data.train.

  Args:
    model: The teacher, freshly built; trained in place.
    data: Its data.
    recipe: How to train it.
    verbose: Keras `fit` verbosity.
    callbacks: Keras callbacks for `fit` (progress lines).

  Returns:
    (train seconds, minival accuracy).
  """
  train = data_lib.make_dataset(data.train, recipe.batch_size, shuffle=True,
                                seed=recipe.seed)
  steps = recipe.epochs * data.train.num_batches(recipe.batch_size)
  _compile_for_ce(model, recipe.learning_rate, steps)
  start = time.perf_counter()
  model.fit(train, epochs=recipe.epochs, verbose=verbose, shuffle=False,
            callbacks=list(callbacks))
  seconds = time.perf_counter() - start
  result = model.evaluate(data_lib.make_dataset(data.minival, 512),
                          verbose=0, return_dict=True)
  return seconds, float(result["accuracy"])


def _cache_key(*parts) -> str:
  return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def get_builtin_teacher(name: str, data: data_lib.Data, cache_dir: str,
                        recipe: TeacherRecipe = TeacherRecipe(),
                        verbose: int = 0,
                        callbacks: Sequence[keras.callbacks.Callback] = ()
                        ) -> Tuple[keras.Model, TeacherInfo]:
  """Returns built-in teacher `name` trained on `data`, training it once.

  The trained model is cached as `<cache_dir>/teachers/<name>-<key>.keras`
  with a `.json` of its `TeacherInfo`; the key covers the teacher name, the
  architecture version, `data.fingerprint` and `recipe`. Training seeds
  Python, NumPy and TensorFlow with `recipe.seed`; `callbacks` go to its
  `fit` (progress lines).

  Raises:
    ValueError: unknown teacher name.
  """
  build_teacher(name, data.input_shape, data.num_classes)  # Checks the name.
  key = _cache_key(name, _ARCH_VERSION, data.fingerprint,
                   dataclasses.asdict(recipe))
  folder = os.path.join(cache_dir, "teachers")
  path = os.path.join(folder, f"{name}-{key}.keras")
  info_path = path[:-len(".keras")] + ".json"
  if os.path.exists(path) and os.path.exists(info_path):
    with open(info_path) as f:
      info = TeacherInfo(**json.load(f))
    model = load_teacher(path)
    return model, dataclasses.replace(info, path=path, cached=True)
  keras.utils.set_random_seed(recipe.seed)
  model = build_teacher(name, data.input_shape, data.num_classes)
  seconds, accuracy = train_teacher(model, data, recipe, verbose=verbose,
                                    callbacks=callbacks)
  info = TeacherInfo(name=name, path=path, params=model.count_params(),
                     train_seconds=seconds, minival_accuracy=accuracy)
  os.makedirs(folder, exist_ok=True)
  tmp = f"{path[:-len('.keras')]}.tmp{os.getpid()}.keras"
  model.save(tmp)
  os.replace(tmp, path)
  jsonl.write_json_atomic(info_path, dataclasses.asdict(info))
  return model, info


def weights_hash(model: keras.Model) -> str:
  """Hex digest of a model's weight values (and their shapes, in order)."""
  h = hashlib.blake2b(digest_size=16)
  for weight in model.weights:
    value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
    h.update(str((weight.path, value.dtype, value.shape)).encode())
    h.update(value.tobytes())
  return h.hexdigest()


def teacher_logits(teacher: keras.Model, split: data_lib.Split,
                   cache_dir: Optional[str] = None,
                   batch_size: int = 256,
                   teacher_output: str = "logits") -> np.ndarray:
  """Returns the teacher's logits on every example of `split`, in order.

  The teacher's outputs are first checked against `teacher_output` on the
  split's first images (`check_teacher_output`); a probabilities teacher
  gives its log-probabilities (`outputs_as_logits`). With `cache_dir`, the
  logits are stored under `<cache_dir>/teacher_logits/`, keyed by the
  teacher's weights, `teacher_output` and the split's fingerprint, and read
  back by every later call with the same three, so a search computes them
  once and every candidate reuses them.

  Returns:
    float32 array of shape (split.size, classes).

  Raises:
    ValueError: the teacher's outputs are not what `teacher_output` says.
  """
  check_teacher_output(teacher, sample_images(split), teacher_output)
  path = None
  if cache_dir is not None:
    key = _cache_key(weights_hash(teacher), teacher_output,
                     split.fingerprint)
    path = os.path.join(cache_dir, "teacher_logits", f"{key}.npy")
    if os.path.exists(path):
      logits = np.load(path, allow_pickle=False)
      if logits.shape[0] == split.size:
        return logits
  outputs = teacher.predict(
      data_lib.make_dataset(split, batch_size).map(lambda x, y: x),
      verbose=0)
  logits = np.asarray(keras.ops.convert_to_numpy(
      outputs_as_logits(outputs, teacher_output)), np.float32)
  if path is not None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path[:-len('.npy')]}.tmp{os.getpid()}.npy"
    np.save(tmp, logits, allow_pickle=False)
    os.replace(tmp, path)
  return logits
