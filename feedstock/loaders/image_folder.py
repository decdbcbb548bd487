"""ImageFolder: one subfolder per class, as DIGITS reads image folders (docs/caffe-compat.md, "DIGITS conventions")."""
from __future__ import annotations

import logging
import os
from typing import Iterable, List, Tuple

from .decode import IMAGE_EXTENSIONS
from .images import LabeledImages

log = logging.getLogger(__name__)

# A folder holding one of these is a database or a build's work folder, never a class nor images:
# an LMDB has data.mdb, a feedstock build (and its OUT.partial) build.json, a ray build's OUT.parts ray.json.
ARTIFACT_FILES = ("data.mdb", "build.json", "ray.json")


def is_build_artifact(path: str) -> bool:
    """True for an LMDB, a feedstock build output or one of its work folders."""
    return any(os.path.isfile(os.path.join(path, name)) for name in ARTIFACT_FILES)


def is_within(path: str, folder: str) -> bool:
    """``path`` equals ``folder`` or lies below it (both already absolute and resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Excluded:
    """Folders never scanned: the given paths (compared after resolving symlinks) and build artifacts."""

    def __init__(self, paths: Iterable[str] = ()):
        self.real = tuple(os.path.realpath(p) for p in paths)

    def __call__(self, path: str) -> bool:
        real = os.path.realpath(path)
        return any(is_within(real, e) for e in self.real) or is_build_artifact(path)


def class_folders(root: str) -> List[str]:
    """Names of the immediate subfolders of ``root``, plain Python sort (case-sensitive), as DIGITS."""
    if not os.path.isdir(root):
        raise ValueError(f"image folder {root!r} is not a directory")
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if e.is_dir(follow_symlinks=True))


def walk_images(folder: str, excluded: Excluded) -> Tuple[List[str], List[str]]:
    """(image files below ``folder``, sorted; the excluded folders met and not entered)."""
    found: List[str] = []
    pruned: List[str] = []
    if excluded(folder):
        return found, [folder]
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        kept: List[str] = []
        for name in sorted(dirnames):
            (pruned if excluded(os.path.join(dirpath, name)) else kept).append(os.path.join(dirpath, name))
        dirnames[:] = [os.path.basename(p) for p in kept]  # os.walk descends only into these
        for name in filenames:
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.join(dirpath, name))
    return sorted(found), pruned


def images_under(folder: str, exclude: Iterable[str] = ()) -> List[str]:
    """Image files anywhere below ``folder`` (symlinks followed, nested folders flattened), sorted;
    folders in ``exclude`` and databases/build outputs (:func:`is_build_artifact`) are not entered."""
    return walk_images(folder, Excluded(exclude))[0]


def scan_image_folder(root: str, *, exclude: Iterable[str] = ()) -> Tuple[List[str], List[str], List[int]]:
    """(classes, paths, labels) of a class-per-subfolder tree; label = index in ``classes``.

    Folders in ``exclude`` (a build's output, its partial and parts folders) and any
    LMDB or build output are never scanned; a subfolder that holds nothing but such
    folders is not a class (it would shift every later label by one).
    """
    excluded = Excluded(exclude)
    classes: List[str] = []
    paths: List[str] = []
    labels: List[int] = []
    for name in class_folders(root):
        files, pruned = walk_images(os.path.join(root, name), excluded)
        if not files and pruned:
            log.info("%s: not a class folder (holds only %s)", os.path.join(root, name), ", ".join(pruned))
            continue
        paths.extend(files)
        labels.extend([len(classes)] * len(files))
        classes.append(name)
    if not classes:
        raise ValueError(f"image folder {root!r} has no class subfolders")
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
