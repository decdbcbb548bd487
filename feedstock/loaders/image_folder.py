"""ImageFolder: one subfolder per class, as DIGITS reads image folders (docs/caffe-compat.md, "DIGITS conventions")."""
from __future__ import annotations

import logging
import os
from typing import Iterable, List, Optional, Sequence, Tuple

from .csv_classes import ClassesArg, as_classes
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


def is_hidden(name: str) -> bool:
    """A dot-name (``.ipynb_checkpoints``, ``.git``, macOS ``._x.jpg``): never a class nor an image."""
    return name.startswith(".")


def class_folders(root: str) -> List[str]:
    """Names of the immediate non-hidden subfolders of ``root``, plain Python sort (case-sensitive), as DIGITS."""
    if not os.path.isdir(root):
        raise ValueError(f"image folder {root!r} is not a directory")
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if not is_hidden(e.name) and e.is_dir(follow_symlinks=True))


def walk_images(folder: str, excluded: Excluded) -> Tuple[List[str], List[str]]:
    """(image files below ``folder``, sorted; the excluded folders met and not entered)."""
    found: List[str] = []
    pruned: List[str] = []
    if excluded(folder):
        return found, [folder]
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        kept: List[str] = []
        for name in sorted(d for d in dirnames if not is_hidden(d)):
            (pruned if excluded(os.path.join(dirpath, name)) else kept).append(os.path.join(dirpath, name))
        dirnames[:] = [os.path.basename(p) for p in kept]  # os.walk descends only into these
        for name in filenames:
            if not is_hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.join(dirpath, name))
    return sorted(found), pruned


def images_under(folder: str, exclude: Iterable[str] = ()) -> List[str]:
    """Image files anywhere below ``folder`` (symlinks followed, nested folders flattened), sorted;
    folders in ``exclude`` and databases/build outputs (:func:`is_build_artifact`) are not entered."""
    return walk_images(folder, Excluded(exclude))[0]


def scan_image_folder(root: str, *, exclude: Iterable[str] = (), classes: Optional[Sequence[str]] = None
                      ) -> Tuple[List[str], List[str], List[int]]:
    """(classes, paths, labels) of a class-per-subfolder tree; label = index in ``classes``.

    Without ``classes`` the class list is the sorted subfolders holding images: hidden
    (dot) folders, empty folders and folders holding only excluded ones are never classes
    (each would shift every later label by one). With ``classes`` (the training set's list)
    codes follow it, so a validation folder missing a class keeps the training codes, and a
    subfolder with images outside the list is an error. Folders in ``exclude`` (a build's
    output, its partial and parts folders) and any LMDB or build output are never scanned.
    """
    excluded = Excluded(exclude)
    found: List[Tuple[str, List[str]]] = []
    for name in class_folders(root):
        files, pruned = walk_images(os.path.join(root, name), excluded)
        if not files:
            held = f"holds only {', '.join(pruned)}" if pruned else "holds no images"
            log.info("%s: not a class folder (%s)", os.path.join(root, name), held)
            continue
        found.append((name, files))
    if not found:
        raise ValueError(f"image folder {root!r} has no class subfolders holding images (no images with "
                         f"extensions {IMAGE_EXTENSIONS} below its non-hidden subfolders)")
    names = [name for name, _ in found] if classes is None else list(classes)
    code = {name: k for k, name in enumerate(names)}
    paths: List[str] = []
    labels: List[int] = []
    for name, files in found:
        if name not in code:
            shown = f"{names[0]}..{names[-1]}" if len(names) > 2 else ", ".join(names)
            raise ValueError(f"image folder {root!r}: class folder {name!r} is not one of the {len(names)} "
                             f"classes of the dataset ({shown}); fix the class list (--classes) or move the folder")
        paths.extend(files)
        labels.extend([code[name]] * len(files))
    return names, paths, labels


class ImageFolder(LabeledImages):
    """Images under ``root/<class>/...``; ``classes`` lists the class names, label = index.

    Extensions png/jpg/jpeg/bmp/ppm (any case); class folders sorted with a plain
    Python sort; files below a class folder at any depth belong to that class; hidden
    (dot) files and folders are skipped. ``classes`` (a list, or a build's labels.txt or
    its folder) fixes the codes: pass the training set's for validation and test folders.
    Yields ``{"data": uint8 (C, H, W) BGR, "label": int64 scalar}``.
    """

    def __init__(self, root: str | os.PathLike, *, classes: ClassesArg = None, color: bool = True,
                 rgb: bool = False):
        self.root = os.fspath(root)
        classes, paths, labels = scan_image_folder(self.root, classes=as_classes(classes))
        self.classes: List[str] = classes
        super().__init__(paths, labels, color=color, rgb=rgb)

    def __repr__(self) -> str:
        return f"ImageFolder({self.root!r}, {len(self)} images, {len(self.classes)} classes)"
