"""The user's own images: a folder with one sub-folder per class.

`DataConfig(dataset='folder:PATH')` (`--dataset=folder:PATH`) reads

  PATH/<class>/<image>            a fixed 20% of them is the test split, or
  PATH/train/<class>/<image>      with PATH/test/<class>/<image> as the
  (or PATH/<class>/ beside test/) test split

as keras.utils.image_dataset_from_directory reads a folder: the classes are
the sub-folders' names in sorted order (label i is the i-th name), and files
ending in .bmp, .gif, .jpeg, .jpg or .png are the images (others are
ignored). Every image is decoded once and held in memory. Grayscale images
keep one channel; a folder that mixes grayscale and color images is read as
RGB; alpha channels are dropped. Images of different sizes need
`image_size`, to which each is resized.

Public names: FOLDER_PREFIX, IMAGE_EXTENSIONS, is_folder_dataset,
folder_path, class_folders, load_folder.
"""

import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

__all__ = ["FOLDER_PREFIX", "IMAGE_EXTENSIONS", "class_folders",
           "folder_path", "is_folder_dataset", "load_folder"]

FOLDER_PREFIX = "folder:"
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
TEST_FRACTION = 0.2
_TRAIN, _TEST = "train", "test"


def is_folder_dataset(dataset: str) -> bool:
  """Whether a dataset name is 'folder:PATH'."""
  return dataset.startswith(FOLDER_PREFIX)


def folder_path(dataset: str) -> str:
  """The PATH of 'folder:PATH' (with ~ expanded)."""
  return os.path.expanduser(dataset[len(FOLDER_PREFIX):])


def _images_in(folder: str) -> List[str]:
  return sorted(f for f in os.listdir(folder)
                if f.lower().endswith(IMAGE_EXTENSIONS) and
                os.path.isfile(os.path.join(folder, f)))


def _subfolders(folder: str) -> List[str]:
  return sorted(f for f in os.listdir(folder)
                if os.path.isdir(os.path.join(folder, f)))


def class_folders(path: str) -> Tuple[str, List[str], Optional[str]]:
  """Checks a folder dataset's layout without reading an image.

  Returns:
    (the folder of the training classes, the class names, the test folder
    or None when the test split is held out of the training images).

  Raises:
    FileNotFoundError: `path` is not a folder.
    ValueError: no class sub-folders, a class without images, a single
      class, or test classes that are not training classes.
  """
  where = f"dataset '{FOLDER_PREFIX}{path}'"
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{where}: no such folder")
  names = _subfolders(path)
  test_dir = os.path.join(path, _TEST) if _TEST in names else None
  train_dir = os.path.join(path, _TRAIN) if _TRAIN in names else path
  classes = [c for c in _subfolders(train_dir)
             if train_dir != path or c != _TEST]
  if not classes:
    raise ValueError(
        f"{where}: no class sub-folders in {train_dir}; put each class's "
        f"images ({', '.join(IMAGE_EXTENSIONS)}) in a sub-folder named for "
        "the class")
  empty = [c for c in classes if not _images_in(os.path.join(train_dir, c))]
  if empty:
    raise ValueError(f"{where}: class folder(s) {empty} in {train_dir} hold "
                     f"no images ({', '.join(IMAGE_EXTENSIONS)})")
  if len(classes) < 2:
    raise ValueError(f"{where}: only one class ('{classes[0]}'); a "
                     "classifier needs at least two class sub-folders")
  if test_dir is not None:
    unknown = sorted(set(_subfolders(test_dir)) - set(classes))
    if unknown:
      raise ValueError(f"{where}: test classes {unknown} in {test_dir} are "
                       f"not training classes {classes}")
  return train_dir, classes, test_dir


def _decode(path: str, where: str) -> np.ndarray:
  """One image file as a uint8 (height, width, channels) array, channels 1
  or 3 (alpha dropped)."""
  try:
    with open(path, "rb") as f:
      image = tf.io.decode_image(f.read(), expand_animations=False,
                                 dtype=tf.uint8).numpy()
  except (OSError, tf.errors.OpError) as error:
    reason = str(error).strip().splitlines()[0] if str(error) else type(
        error).__name__
    raise ValueError(f"{where}: cannot read {path} as an image "
                     f"({reason})") from None
  return image[..., :1] if image.shape[-1] == 2 else image[..., :3]


def _read_split(folder: str, classes: List[str], where: str):
  """Every image under `folder`/<class> -> (list of arrays, int32 labels,
  the files)."""
  images, labels, files = [], [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(folder, name)
    if not os.path.isdir(class_dir):
      continue
    for file in _images_in(class_dir):
      path = os.path.join(class_dir, file)
      images.append(_decode(path, where))
      labels.append(label)
      files.append(path)
  return images, np.array(labels, np.int32), files


def _stack(images: List[np.ndarray], files: List[str],
           image_size: Optional[int], channels: int, where: str) -> np.ndarray:
  """The images as one float32 array in [0, 255]: `channels` channels,
  resized to image_size when given, else all of one size."""
  if image_size is None:
    first = images[0].shape[:2]
    for image, file in zip(images, files):
      if image.shape[:2] != first:
        raise ValueError(
            f"{where}: images differ in size ({first[0]}x{first[1]} in "
            f"{files[0]}, {image.shape[0]}x{image.shape[1]} in {file}); set "
            "image_size (--image_size) to resize them all to one size")
  out = []
  for image in images:
    if image.shape[-1] != channels:
      image = np.repeat(image, channels, axis=-1)
    image = image.astype(np.float32)
    if image_size is not None and image.shape[:2] != (image_size,
                                                      image_size):
      image = np.clip(tf.image.resize(image, (image_size, image_size),
                                      antialias=True).numpy(), 0.0, 255.0)
    out.append(image)
  return np.stack(out)


def load_folder(path: str, image_size: Optional[int] = None
                ) -> Tuple[Dict[str, Tuple[np.ndarray, np.ndarray]],
                           List[str]]:
  """Reads a folder dataset's images.

  Args:
    path: The folder (the PATH of 'folder:PATH').
    image_size: Resize every image to image_size x image_size; None keeps
      their size, which must then be the same for all.

  Returns:
    ({'train': (images, labels), 'test': (images, labels)}, class names):
    float32 images in [0, 255] of shape (N, H, W, C) and int32 labels. The
    test split is the test/ folder, or a fixed 20% of the images (the same
    for every seed, so no seed moves test images into training).

  Raises:
    FileNotFoundError: `path` is not a folder.
    ValueError: a bad layout (see `class_folders`), an unreadable image,
      or images of different sizes without `image_size`; the message names
      the folder and the file.
  """
  where = f"dataset '{FOLDER_PREFIX}{path}'"
  train_dir, classes, test_dir = class_folders(path)
  images, labels, files = _read_split(train_dir, classes, where)
  test = None
  if test_dir is not None:
    test = _read_split(test_dir, classes, where)
    if not test[0]:
      raise ValueError(f"{where}: {test_dir} holds no images")
  channels = max(image.shape[-1] for image in images + (
      test[0] if test else []))
  every = _stack(images + (test[0] if test else []),
                 files + (test[2] if test else []), image_size, channels,
                 where)
  train_images = every[:len(images)]
  if test is not None:
    return {"train": (train_images, labels),
            "test": (every[len(images):], test[1])}, classes
  order = np.random.default_rng(0).permutation(len(labels))
  n_test = max(1, int(len(labels) * TEST_FRACTION))
  test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
  return {"train": (train_images[train_idx], labels[train_idx]),
          "test": (train_images[test_idx], labels[test_idx])}, classes
