"""Engines beyond the local worker pool: ``RayLoader`` makes the Loader's batches on a Ray cluster.

Importing this package does not import Ray; constructing a RayLoader's first
iteration does (``pip install 'feedstock[ray]'``).
"""
from .ray_loader import RayLoader

ENGINES = ("local", "ray")

__all__ = ["ENGINES", "RayLoader"]
