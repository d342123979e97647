"""Datasets by reference: `tfds:NAME`, `folder:PATH`, `npz:PATH`, read into the same (train, test) arrays as the
built-in sources, and judged before anything trains.

    metadata(reference, ...) -> (num_classes, image_shape)   cheap: shapes, labels, folder names, one image
    train_label_counts(reference, ...) -> (images per class or None, training images)   as cheap
    read(reference, ...)     -> (train_x, train_y), (test_x, test_y), num_classes   uint8 [N, H, W, C], int32 [N]

`metadata` is what kdas_tf.assembly reads when a job starts (data_metadata, the budget), before any data is read: an npz's array headers and its
labels, a folder's class names and its first image (or --image_size), a TFDS builder's info. Every bad input
(no classes, an empty class, labels out of range or not integers, mixed sizes without --image_size, a corrupt
image, a missing file) is a one-line UserError that names the file.
"""

import os
import zipfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from kdas_tf.data import sources
from kdas_tf.data.catalog import parse_reference
from kdas_tf.errors import UserError, one_line

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
# What keras.utils.image_dataset_from_directory reads.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def metadata(reference, *, data_dir=None, image_size=None, tfds_splits=("train", "test")):
    """(num_classes, (H, W, C)) of a reference, from its metadata only (see the module docstring)."""
    kind, target = parse_reference(reference)
    if kind == "npz":
        shapes, labels = _npz_headers(target)
        return _npz_num_classes(target, labels), shapes["x_train"]
    if kind == "folder":
        layout = _folder_layout(target)
        first = layout["train"][0][0]
        channels, size = _image_header(first)
        height, width = (image_size, image_size) if image_size else size
        return len(layout["classes"]), (height, width, channels)
    info = _tfds_builder(target, data_dir).info
    image, label = _tfds_keys(info)
    shape = tuple(info.features[image].shape)
    if image_size:
        shape = (image_size, image_size, shape[-1])
    elif None in shape[:2]:
        raise UserError(f"--dataset={reference}: its images differ in size ({shape}): pass --image_size=S to "
                        "resize them to S x S")
    missing = [split for split in tfds_splits if split not in info.splits]
    if missing and info.splits:
        raise UserError(f"--dataset={reference} has no split {', '.join(missing)} (it has "
                        f"{', '.join(info.splits)}): pass --tfds_splits=TRAIN,TEST")
    return info.features[label].num_classes, shape


def read(reference, *, data_dir=None, image_size=None, tfds_splits=("train", "test"), test_fraction=0.2,
         split_seed=0):
    """((train_x, train_y), (test_x, test_y), num_classes) of a reference, checked."""
    kind, target = parse_reference(reference)
    if kind == "npz":
        return _read_npz(target)
    if kind == "folder":
        return _read_folder(target, image_size, test_fraction, split_seed)
    return _read_tfds(target, data_dir, image_size, tfds_splits)


def train_label_counts(reference, *, data_dir=None, tfds_splits=("train", "test"), test_fraction=0.2, split_seed=0):
    """(training images per class [K], or None where only reading the images tells (tfds); the number of training
    images) of a reference's training split, from its metadata as `metadata` reads it."""
    kind, target = parse_reference(reference)
    if kind == "npz":
        labels = _npz_headers(target)[1]["y_train"].reshape(-1)
        return np.bincount(labels), len(labels)
    if kind == "folder":
        layout = _folder_layout(target)
        labels = np.array([label for _, label in layout["train"] + (layout["test"] or [])])
        train = (np.arange(len(layout["train"])) if layout["test"] is not None else
                 _folder_holdout(len(labels), test_fraction, split_seed)[0])
        return np.bincount(labels[train], minlength=len(layout["classes"])), len(train)
    splits = _tfds_builder(target, data_dir).info.splits
    return None, (splits[tfds_splits[0]].num_examples if tfds_splits[0] in splits else None)


# --- npz ------------------------------------------------------------------------------------------


def _npz_headers(path):
    """({array: shape} from the .npy headers, {y_train, y_test: labels}) of an npz, without reading its images."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [name for name in NPZ_ARRAYS if f"{name}.npy" not in names]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)}: an npz dataset holds x_train, y_train, x_test, "
                                "y_test (np.savez(path, x_train=..., ...))")
            shapes, labels = {}, {}
            for name in NPZ_ARRAYS:
                with archive.open(f"{name}.npy") as f:
                    read_header = NPY_HEADERS.get(np.lib.format.read_magic(f))
                    if read_header is None:
                        raise ValueError(f"{name}.npy has an unknown .npy format version")
                    shape, _, dtype = read_header(f)
                    if name.startswith("y"):
                        labels[name] = np.lib.format.read_array(archive.open(f"{name}.npy"), allow_pickle=False)
                shapes[name] = (shape, dtype)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: --dataset=npz:PATH names an .npz file") from None
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise UserError(f"{path} is not a readable .npz file ({one_line(error)}): write it with np.savez") from None
    return check_shapes(path, shapes), labels


def check_shapes(path, shapes):
    """{x_train, x_test: (H, W, C)} from {array name: (shape, dtype)}, after checking dtypes, ranks and lengths."""
    images = {}
    for split in ("train", "test"):
        (shape, dtype), (label_shape, label_dtype) = shapes[f"x_{split}"], shapes[f"y_{split}"]
        if dtype != np.uint8 or len(shape) not in (3, 4):
            raise UserError(f"{path}: x_{split} is {dtype} {shape}; images must be uint8 [N, H, W] or [N, H, W, C]")
        if not np.issubdtype(label_dtype, np.integer) or len(label_shape) not in (1, 2) or label_shape[1:] not in (
                (), (1,)):
            raise UserError(f"{path}: y_{split} is {label_dtype} {label_shape}; labels must be integers [N] "
                            "(class ids 0..K-1)")
        if label_shape[0] != shape[0]:
            raise UserError(f"{path}: x_{split} holds {shape[0]} images but y_{split} {label_shape[0]} labels")
        if shape[0] == 0:
            raise UserError(f"{path}: x_{split} is empty")
        images[f"x_{split}"] = tuple(int(d) for d in shape[1:]) + ((1,) if len(shape) == 3 else ())
    if images["x_train"] != images["x_test"]:
        raise UserError(f"{path}: x_train's images are {images['x_train']}, x_test's {images['x_test']}: make them "
                        "the same size")
    return images


def _npz_num_classes(path, labels):
    """K = the largest training label + 1, after checking every class 0..K-1 has training examples."""
    train, test = (labels[name].reshape(-1) for name in ("y_train", "y_test"))
    return check_labels(path, train, test)


def check_labels(source, train_labels, test_labels):
    """K, the number of classes: labels are 0..K-1, each class in the training labels, test labels below K."""
    for name, labels in (("y_train", train_labels), ("y_test", test_labels)):
        if not np.issubdtype(labels.dtype, np.integer):
            raise UserError(f"{source}: {name} is {labels.dtype}; labels must be integer class ids 0..K-1")
        if labels.min() < 0:
            raise UserError(f"{source}: {name} has label {labels.min()}; labels must be class ids 0..K-1")
    num_classes = int(train_labels.max()) + 1
    empty = np.flatnonzero(np.bincount(train_labels, minlength=num_classes) == 0)
    if len(empty):
        raise UserError(f"{source}: class {empty[0]} of 0..{num_classes - 1} has no training example "
                        f"({len(empty)} such): renumber the labels 0..K-1 without gaps")
    if test_labels.max() >= num_classes:
        raise UserError(f"{source}: y_test has label {test_labels.max()} but the training labels are "
                        f"0..{num_classes - 1}")
    return num_classes


def _read_npz(path):
    _, labels = _npz_headers(path)
    num_classes = _npz_num_classes(path, labels)
    with np.load(path, allow_pickle=False) as arrays:
        splits = []
        for split in ("train", "test"):
            images = arrays[f"x_{split}"]
            splits.append((images[..., None] if images.ndim == 3 else images,
                           labels[f"y_{split}"].reshape(-1).astype(np.int32)))
    return (*splits, num_classes)


# --- folder -----------------------------------------------------------------------------------------


def _class_images(directory):
    """{class name: sorted image paths} of the class sub-folders of `directory` (sorted names, as Keras does)."""
    classes = sorted(name for name in os.listdir(directory) if os.path.isdir(os.path.join(directory, name)))
    if not classes:
        raise UserError(f"{directory} has no class folders: put each class's images in a sub-folder named "
                        "after it (PATH/CLASS/image.png)")
    images = {}
    for name in classes:
        folder = os.path.join(directory, name)
        images[name] = sorted(os.path.join(root, file) for root, _, files in os.walk(folder) for file in files
                              if file.lower().endswith(IMAGE_EXTENSIONS))
        if not images[name]:
            raise UserError(f"{folder} holds no image ({', '.join(IMAGE_EXTENSIONS)}): add images or remove the "
                            "folder")
    return images


def _folder_layout(path):
    """{"classes": names, "train": [(file, label)], "test": [(file, label)] or None (no PATH/train + PATH/test)}."""
    if not os.path.isdir(path):
        raise UserError(f"{path} is not a directory: --dataset=folder:PATH names a folder of class folders")
    train_dir, test_dir = os.path.join(path, "train"), os.path.join(path, "test")
    paired = os.path.isdir(train_dir) and os.path.isdir(test_dir)
    train = _class_images(train_dir if paired else path)
    classes = list(train)
    label_of = {name: i for i, name in enumerate(classes)}
    layout = {"classes": classes, "train": [(f, label_of[c]) for c, files in train.items() for f in files],
              "test": None}
    if paired:
        test = _class_images(test_dir)
        unknown = [name for name in test if name not in label_of]
        if unknown:
            raise UserError(f"{os.path.join(test_dir, unknown[0])} is a class that {train_dir} lacks: the test "
                            "classes must be training classes")
        layout["test"] = [(f, label_of[c]) for c, files in test.items() for f in files]
    return layout


def _decode(path):
    """The image at `path` as uint8 [H, W, C]; a corrupt file is a UserError naming it."""
    try:
        return tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        raise UserError(f"{path} is not a readable image ({one_line(error.message)}): replace or remove "
                        "it") from None


def _image_header(path):
    """(channels, (H, W)) of the first image; grey + alpha counts as grey, RGBA as RGB."""
    image = _decode(path)
    return (1 if image.shape[-1] <= 2 else 3), tuple(image.shape[:2])


def _read_folder(path, image_size, test_fraction, split_seed):
    layout = _folder_layout(path)
    files = layout["train"] + (layout["test"] or [])
    channels, size = _image_header(files[0][0])
    images = np.stack([_fit(_decode(f), f, channels, size, image_size) for f, _ in files])
    labels = np.array([label for _, label in files], np.int32)
    if layout["test"] is not None:
        cut = len(layout["train"])
        return (images[:cut], labels[:cut]), (images[cut:], labels[cut:]), len(layout["classes"])
    train, test = _folder_holdout(len(files), test_fraction, split_seed)
    return (images[train], labels[train]), (images[test], labels[test]), len(layout["classes"])


def _folder_holdout(num_files, test_fraction, split_seed):
    """Seeded (train, test) positions, each sorted, of a folder without train/ and test/."""
    order = np.random.default_rng([split_seed, 2]).permutation(num_files)
    num_test = min(max(1, round(num_files * test_fraction)), num_files - 1)
    return np.sort(order[num_test:]), np.sort(order[:num_test])


def _fit(image, path, channels, size, image_size):
    """An image with the dataset's channels, resized to image_size x image_size or checked to be `size`."""
    image = image[..., :3] if image.shape[-1] == 4 else image[..., :1] if image.shape[-1] == 2 else image
    if image.shape[-1] != channels:
        convert = tf.image.grayscale_to_rgb if channels == 3 else tf.image.rgb_to_grayscale
        image = convert(tf.constant(image)).numpy()
    if image_size:
        if image.shape[:2] != (image_size, image_size):
            resized = tf.image.resize(image, (image_size, image_size), antialias=True)
            image = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()
    elif image.shape[:2] != size:
        raise UserError(f"{path} is {image.shape[0]}x{image.shape[1]}, the first image {size[0]}x{size[1]}: pass "
                        "--image_size=S to resize every image to S x S")
    return image


# --- tfds -------------------------------------------------------------------------------------------


def _tfds_builder(name, data_dir):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UserError(f"--dataset=tfds:{name}: tensorflow-datasets has no dataset {name!r}") from None


def _tfds_keys(info):
    """The (image, label) feature names: the builder's supervised keys, else 'image' and 'label'."""
    image, label = info.supervised_keys or ("image", "label")
    if image not in info.features or label not in info.features or not hasattr(info.features[label], "num_classes"):
        raise UserError(f"tfds:{info.name} is not an image classification dataset (features "
                        f"{', '.join(info.features)}): --dataset=tfds:NAME needs an image and a class label")
    return image, label


def _read_tfds(name, data_dir, image_size, tfds_splits):
    builder = _tfds_builder(name, data_dir)
    image_key, label_key = _tfds_keys(builder.info)
    try:
        splits = tfds.load(name, split=list(tfds_splits), data_dir=data_dir, download=False, try_gcs=False)
    except AssertionError as error:
        if "could not find data" not in str(error):
            raise
        raise sources.DataNotFoundError(
            f"{name} is not prepared in {sources._flag('data_dir', data_dir, sources.DEFAULT_DATA_DIR)}: on a "
            f"connected machine run python -c \"import tensorflow_datasets as tfds; tfds.load('{name}', "
            "data_dir='DIR')\" then copy DIR here and pass --data_dir=DIR") from None

    def example(ex):
        image = ex[image_key]
        if image_size:
            image = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, (image_size, image_size),
                                                                       antialias=True)), 0, 255), tf.uint8)
        return {"image": image, "label": ex[label_key]}

    (train_x, train_y), (test_x, test_y) = (sources._to_numpy(split.map(example)) for split in splits)
    return (train_x, train_y), (test_x, test_y), builder.info.features[label_key].num_classes
