"""The remote feed: `feedstock serve` streams a Loader's batches over ZeroMQ; RemoteLoader takes them in."""
from .client import RemoteLoader
from .server import FeedServer

__all__ = ["FeedServer", "RemoteLoader"]
