"""feedstock.writers.build: ``feedstock build-lmdb`` and ``merge-lmdb`` (Caffe-compatible dataset conversion).

``builder`` runs a build (listing, encoding workers, LMDB writes, mean, report);
``plan`` lists and splits the inputs; ``encode`` turns files and rows into Datums;
``output`` and ``safety`` publish an output it owns; ``pairs`` builds image + mask
sets; ``merge`` joins shards; ``on_ray`` runs the encoding on Ray Data.
"""
from .builder import BuildOptions, BuildReport, build_lmdb

__all__ = ["BuildOptions", "BuildReport", "build_lmdb"]
