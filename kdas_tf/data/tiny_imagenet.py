"""TFDS builder for Tiny ImageNet (200 classes, 64x64), read from the official zip in manual_dir.

Tiny ImageNet is not in the TFDS catalogue. The official zip has
`tiny-imagenet-200/wnids.txt`, `train/<wnid>/images/*.JPEG` (500 per class)
and `val/images/*.JPEG` labelled by `val/val_annotations.txt` (50 per class);
the official test images carry no labels, so they are not read. Class ids are
the positions of the sorted wnids. JPEG bytes are stored as they are; some
images are grayscale and decode to 3 channels.
"""

import posixpath
import zipfile

import tensorflow_datasets as tfds
from etils import epath

ZIP_NAME = "tiny-imagenet-200.zip"
NUM_CLASSES = 200
IMAGE_SHAPE = (64, 64, 3)


def _zip_root(archive):
    """The folder holding wnids.txt inside the archive ('tiny-imagenet-200/' in the official zip)."""
    for name in archive.namelist():
        if posixpath.basename(name) == "wnids.txt":
            return posixpath.dirname(name)
    raise ValueError(f"{ZIP_NAME} has no wnids.txt: not the official Tiny ImageNet archive")


def _read_text(archive, path):
    return archive.read(path).decode("utf-8").splitlines()


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
    """Tiny ImageNet 200: splits 'train' (100k) and 'validation' (10k, labelled)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Train and labelled validation splits from the official zip."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download http://cs231n.stanford.edu/{ZIP_NAME} and place the zip (not extracted) "
        "in the manual_dir."
    )

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        """This file: TFDS 4.9.10's default lookup imports importlib_resources, which it does not declare."""
        return epath.Path(__file__)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=IMAGE_SHAPE),
                "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                "id": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
            homepage="http://cs231n.stanford.edu/",
        )

    def _split_generators(self, dl_manager):
        zip_path = dl_manager.manual_dir / ZIP_NAME
        return {
            "train": self._generate_examples(zip_path, "train"),
            "validation": self._generate_examples(zip_path, "validation"),
        }

    def _generate_examples(self, zip_path, split):
        with zip_path.open("rb") as f, zipfile.ZipFile(f) as archive:
            root = _zip_root(archive)
            lines = _read_text(archive, posixpath.join(root, "wnids.txt"))
            wnids = sorted(line.strip() for line in lines if line.strip())
            label_of = {wnid: i for i, wnid in enumerate(wnids)}
            for path, wnid in self._labelled_images(archive, root, split):
                image = archive.read(path)
                yield path, {"image": image, "label": label_of[wnid], "id": posixpath.basename(path)}

    @staticmethod
    def _labelled_images(archive, root, split):
        """(path in archive, wnid) of every image of the split."""
        if split == "train":
            prefix = posixpath.join(root, "train") + "/"
            for name in archive.namelist():
                parts = name[len(prefix):].split("/")
                if name.startswith(prefix) and len(parts) == 3 and parts[1] == "images" and parts[2]:
                    yield name, parts[0]
        else:
            val_dir = posixpath.join(root, "val")
            for line in _read_text(archive, posixpath.join(val_dir, "val_annotations.txt")):
                fields = line.split("\t")
                if len(fields) >= 2:
                    yield posixpath.join(val_dir, "images", fields[0]), fields[1]
