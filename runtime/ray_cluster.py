"""A connection to Ray for one encode run: reach (or start) a cluster, size its actors, leave it as found.

>>> cluster = connect("auto", note=print)         # the cluster of this node; None: $RAY_ADDRESS or a new one
>>> threads = cluster.threads_per_actor(actors=4, threads=0)
>>> cluster.close()                                # stops Ray only if this run started it

``ray`` is imported only when a run uses it: the runtime stays importable (and the local engine
usable) without the ``[ray]`` extra.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from interformer_edge.core.messages import first_line

from .errors import InterFormerRuntimeError

CONNECT_TIMEOUT_S = 5.0  # to reach a cluster's head before handing the address to Ray
INSTALL_HINT = 'the Ray engine needs the [ray] extra: pip install "interformer-edge[ray]"'


class RayEngineError(InterFormerRuntimeError):
    """Ray is missing or unreachable, the cluster cannot host the actors, or the run could not start."""


def import_ray() -> Any:
    """The ``ray`` module; :class:`RayEngineError` naming the extra when it is not installed."""
    try:
        import ray
    except ImportError:
        raise RayEngineError(INSTALL_HINT) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None for ``auto`` or a bare host."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        port = parsed.port
    except ValueError:
        return None
    return (parsed.hostname, port) if parsed.hostname and port else None


def _check_reachable(address: str) -> None:
    """Fail within :data:`CONNECT_TIMEOUT_S` on a closed port or an unknown host (Ray itself retries for long)."""
    target = _host_port(address)
    if target is None:
        if address != "auto":
            raise RayEngineError(
                f"--address {address!r}: expected auto or HEAD:PORT (the head node's port, 6379 by default)"
            )
        return
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise RayEngineError(f"cannot reach a Ray cluster at {address}: {reason}") from None


@dataclass
class RayCluster:
    """A connection to Ray for one encode run; ``owned``: this run started it (and stops it in :meth:`close`)."""

    owned: bool
    started_in: float  # seconds spent connecting (or starting Ray)

    def threads_per_actor(self, actors: int, threads: int | None) -> int:
        """Threads (and Ray CPUs) of each actor: ``threads``, or (0 or None) the cluster's CPUs divided among
        the actors. Raises :class:`RayEngineError` if the cluster's nodes cannot host ``actors`` of them."""
        ray = import_ray()
        nodes = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]
        total = sum(nodes)
        threads = threads or max(1, int(total // actors))
        slots = sum(int(cpus // threads) for cpus in nodes)
        if slots < actors:
            raise RayEngineError(
                f"the Ray cluster ({len(nodes)} node(s), {total:g} CPUs) fits {slots} actor(s) of {threads} "
                f"thread(s), not {actors}: lower --actors or --threads"
            )
        return threads

    def close(self) -> None:
        """Stop Ray if this run started it; otherwise only leave the cluster as it was."""
        if self.owned:
            import_ray().shutdown()


def _has_auth_token() -> bool:
    """Whether a Ray cluster token is at hand: ``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token`` (where ``ray start`` and ``ray get-auth-token --generate`` put it)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return Path(path).is_file()


def connect(address: str | None, note: Callable[[str], None] | None = None) -> RayCluster:
    """Connect to the Ray cluster at ``address`` (``auto`` or ``host:port``; ``ray://`` is refused), or with
    None to ``$RAY_ADDRESS``, else start a new Ray instance on this machine for the run. A process
    already connected to Ray (``ray.init`` called) keeps its connection. ``note`` gets one line on a
    Ray this run started (its version, start-up time and CPUs).

    Raises:
        RayEngineError: ray is not installed, or the cluster cannot be reached (one line).
    """
    if address:  # fail fast on a closed port, even in a process already connected elsewhere
        _check_reachable(address)
    if address and address.startswith("ray://"):
        # Verified with ray 2.60: Ray Client connects, but running any dataset through it fails inside Ray
        # Data ("'Worker' object has no attribute 'core_worker'").
        raise RayEngineError(
            f"{address}: Ray Data does not run through Ray Client (ray://); run the command on a node of the "
            "cluster with --address auto, from a machine on its network with --address HEAD:6379, or as a "
            "Ray job (ray job submit --address http://HEAD:8265 -- interformer-encode ... --address auto)"
        )
    # Ray reads these when it is imported. The core worker's own log would add a warning-worded line
    # about restartable actors (ray issue 53727); Ray's errors still reach us as exceptions.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if address and address != "auto" and _has_auth_token():
        # Ray (2.60) sends the cluster token only when it starts Ray or finds it with "auto"; a driver that
        # names the address of a cluster with token authentication (Ray's default) is refused without it.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    ray = import_ray()
    started = time.perf_counter()
    if ray.is_initialized():
        return RayCluster(owned=False, started_in=0.0)
    # Ray's notices (token authentication, deprecations) are not the user's business; its errors are.
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # "local": a new instance even when this machine runs a cluster of `ray start` (ray.init() would join
        # that one; --address auto is the way to ask for it).
        address = "local"
        options.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        ray.init(address=address, **options)
    except Exception as err:  # ConnectionError, RuntimeError, ValueError, grpc errors …
        where = {None: os.environ.get("RAY_ADDRESS", ""), "local": "this machine"}.get(address, address)
        raise RayEngineError(f"cannot connect to Ray ({where}): {first_line(err)}") from None
    cluster = RayCluster(owned=True, started_in=time.perf_counter() - started)
    if note is not None:
        note(
            f"Ray {ray.__version__}: connected in {cluster.started_in:.1f} s "
            f"({ray.cluster_resources().get('CPU', 0):g} CPUs)"
        )
    return cluster
