"""Ray for the ray engine: import it with an install hint, join a cluster or start a local instance.

Without an ``address`` a local instance with ``workers`` CPUs (all when 0) is
started and shut down with the loader, unless this process is connected to Ray
already (a cluster the caller set up: it is used as it is and left open). With
an address the loader joins that cluster; the address that cannot be reached is
named in a one-line error.
"""
from __future__ import annotations

import logging
import re
import socket
from types import ModuleType
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 5.0
INSTALL_HINT = "the ray engine needs Ray: pip install 'feedstock[ray]'"


def import_ray() -> ModuleType:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    return ray


class RaySession:
    """This process's Ray connection for one loader; ``close()`` shuts Ray down only if it started it.

    A Ray connection is per process, so sessions share the one a session started:
    a training and a validation RayLoader use one local instance, which stops when
    the last of them closes (``_users`` counts them; 0 when feedstock started none).
    """

    _users = 0  # open sessions on a Ray instance that a session started (Ray's connection is process-wide)

    def __init__(self, address: Optional[str], workers: int, init_kwargs: Optional[Dict[str, Any]] = None):
        self.ray = import_ray()
        self.address = address
        self.started = False
        ray = self.ray
        if ray.is_initialized():
            if address is not None:
                log.warning("Ray is already initialised in this process: using that connection, not %s", address)
            if RaySession._users:  # ours: share it, the last session to close stops it
                RaySession._users += 1
                self.started = True
            return
        if address is not None:
            check_reachable(address)
        kwargs = dict(init_kwargs or {})
        kwargs.setdefault("logging_level", logging.WARNING)
        kwargs.setdefault("log_to_driver", False)  # workers' logs stay in the session folder
        try:
            if address is not None:
                ray.init(address=address, **kwargs)
            else:
                # "local": a new instance even when another one runs on this machine (ray.init() with no
                # address joins the latest cluster started here, e.g. another user's or test run's)
                ray.init(address="local", num_cpus=workers or None, include_dashboard=False, **kwargs)
        except ConnectionError as e:
            ray.shutdown()
            raise ConnectionError(f"cannot reach the Ray cluster at address={address!r}: {first_line(e)}; is "
                                  "`ray start --head` running there (and the port open)?") from None
        except Exception as e:  # Ray raises several types for an address it cannot use
            ray.shutdown()
            if address is None:
                raise
            raise ConnectionError(f"cannot join the Ray cluster at address={address!r}: {first_line(e)}") from None
        self.started = True
        RaySession._users = 1

    def cpus(self) -> int:
        """CPUs the cluster has now (nodes join and leave)."""
        return int(self.ray.cluster_resources().get("CPU", 0))

    def close(self) -> None:
        if self.started:
            self.started = False
            RaySession._users -= 1
            if RaySession._users == 0:
                self.ray.shutdown()


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A quick TCP connect to ``HOST:PORT`` (``ray://`` too): Ray itself retries an unreachable GCS
    for minutes. "auto" and other forms are left to Ray."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if match is None:
        return
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"cannot reach the Ray cluster at address={address!r} ({e.strerror or e}): is "
                              "`ray start --head` running there, and the port open from here?") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
