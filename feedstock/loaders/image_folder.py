"""ImageFolder: one subfolder per class, as DIGITS reads image folders (caffe.md §7.1)."""
from __future__ import annotations

import os
from typing import List, Tuple

from .decode import IMAGE_EXTENSIONS
from .images import LabeledImages


def class_folders(root: str) -> List[str]:
    """Names of the immediate subfolders of ``root``, plain Python sort (case-sensitive), as DIGITS."""
    if not os.path.isdir(root):
        raise ValueError(f"image folder {root!r} is not a directory")
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if e.is_dir(follow_symlinks=True))


def images_under(folder: str) -> List[str]:
    """Image files anywhere below ``folder`` (symlinks followed, nested folders flattened), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        for name in filenames:
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def scan_image_folder(root: str) -> Tuple[List[str], List[str], List[int]]:
    """(classes, paths, labels) of a class-per-subfolder tree; label = index in ``classes``."""
    classes = class_folders(root)
    if not classes:
        raise ValueError(f"image folder {root!r} has no class subfolders")
    paths: List[str] = []
    labels: List[int] = []
    for label, name in enumerate(classes):
        files = images_under(os.path.join(root, name))
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise ValueError(
            f"image folder {root!r} has no images with extensions {IMAGE_EXTENSIONS} "
            f"in its {len(classes)} class folders"
        )
    return classes, paths, labels


class ImageFolder(LabeledImages):
    """Images under ``root/<class>/...``; ``classes`` lists the class names, label = index.

    Extensions png/jpg/jpeg/bmp/ppm (any case); class folders sorted with a plain
    Python sort; files below a class folder at any depth belong to that class.
    Yields ``{"data": uint8 (C, H, W) BGR, "label": int64 scalar}``.
    """

    def __init__(self, root: str | os.PathLike, *, color: bool = True, rgb: bool = False):
        self.root = os.fspath(root)
        classes, paths, labels = scan_image_folder(self.root)
        self.classes: List[str] = classes
        super().__init__(paths, labels, color=color, rgb=rgb)

    def __repr__(self) -> str:
        return f"ImageFolder({self.root!r}, {len(self)} images, {len(self.classes)} classes)"
