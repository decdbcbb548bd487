"""CURVE keys and the loopback rule: a feed without CURVE binds to loopback unless told otherwise."""
from __future__ import annotations

import os
import re
from typing import Optional, Tuple, Union

import zmq
import zmq.auth

CurveKey = Union[str, bytes, "os.PathLike[str]"]  # a Z85 public key (40 characters) or a certificate file

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_TCP = re.compile(r"\Atcp://(\[[^\]]*\]|[^:]*):(\d+|\*)\Z")


def check_endpoint(endpoint: str) -> Optional[str]:
    """The host of a tcp endpoint (None for ipc/inproc); ValueError unless it is tcp://HOST:PORT with a
    port in 0..65535 (ZeroMQ would take port 99999 modulo 65536, silently another port)."""
    if not isinstance(endpoint, str):
        raise ValueError(f"endpoint {endpoint!r} must be a string like tcp://HOST:PORT")
    if endpoint.startswith(("ipc://", "inproc://")):
        return None
    m = _TCP.match(endpoint)
    if not m:
        raise ValueError(f"endpoint {endpoint[:200]!r} must look like tcp://HOST:PORT (or ipc://PATH)")
    if m.group(2) != "*" and not 0 <= int(m.group(2)) <= 65535:
        raise ValueError(f"endpoint {endpoint!r}: port {m.group(2)} is not in 0..65535")
    return m.group(1)


def is_loopback(endpoint: str) -> bool:
    """True for ipc/inproc endpoints and tcp on a loopback address (127.0.0.0/8, ::1, localhost)."""
    host = check_endpoint(endpoint)
    return host is None or host in _LOOPBACK or host.startswith("127.")


def check_bind(endpoint: str, *, curve: bool, insecure: bool) -> None:
    """ValueError for a non-loopback bind without CURVE, unless ``insecure``."""
    check_endpoint(endpoint)
    if not curve and not insecure and not is_loopback(endpoint):
        raise ValueError(
            f"binding {endpoint} without CURVE would stream batches to anyone who can reach the port: "
            "pass a server key (`feedstock keygen DIR`, then --curve-secret DIR/server.key_secret), "
            "bind to 127.0.0.1, or say --insecure on a network you trust")


def make_keys(directory: str, name: str) -> Tuple[str, str]:
    """A CURVE key pair as ZeroMQ certificate files: (public NAME.key, secret NAME.key_secret)."""
    os.makedirs(directory, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return public, secret


def load_public(key: CurveKey) -> bytes:
    """A Z85 public key: given as bytes/str (40 characters) or a certificate file path."""
    if isinstance(key, (bytes, str)) and len(key) == 40 and not os.path.exists(str(key)):
        return key.encode() if isinstance(key, str) else key
    public, _ = _load(str(key))
    return public


def load_pair(path: str) -> Tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` certificate file."""
    public, secret = _load(path)
    if not secret:
        raise ValueError(f"{path}: holds no secret key (use the .key_secret file)")
    return public, secret


def _load(path: str) -> Tuple[bytes, Optional[bytes]]:
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a ZeroMQ certificate file ({exc})") from None


def server_curve(sock: zmq.Socket, secret_file: str) -> None:
    public, secret = load_pair(secret_file)
    sock.curve_publickey, sock.curve_secretkey, sock.curve_server = public, secret, True


def client_curve(sock: zmq.Socket, server_key: CurveKey, keys: Optional[str]) -> None:
    """The client side of CURVE: our pair (from ``keys`` or a fresh one) and the server's public key."""
    public, secret = load_pair(keys) if keys else zmq.curve_keypair()
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.curve_serverkey = load_public(server_key)
