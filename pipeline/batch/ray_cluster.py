"""The Ray engine's cluster side: joining or starting a Ray instance, and sizing the workers.

Nothing here imports Ray at module level: ``layercut`` without the ``ray`` extra must run, and
``--engine ray`` must fail in one line (``ray_missing``) before anything loads.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

RAY_INSTALL_HINT = "pip install 'layercut[ray]'"
# The driver's variables that configure layercut travel to the workers (weights folder and
# manifest, offline mode, weights cache, Ultralytics' settings); nothing else does.
FORWARDED_ENV_PREFIXES = ("LAYERCUT_", "YOLO_")
FORWARDED_ENV_NAMES = ("XDG_CACHE_HOME",)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class ClusterError(ValueError):
    """The Ray cluster cannot run this batch (unreachable, too small): one line, exit 2."""


@dataclass(frozen=True)
class RaySettings:
    """How the Ray engine runs.

    Attributes:
        address: ``HOST:PORT`` of a running cluster's head, or ``auto`` (the cluster ``ray
            start`` runs on this machine); None: ``$RAY_ADDRESS`` when set, else a private Ray
            instance on 127.0.0.1, started for this run and stopped after it.
        workers: how many workers (actors); None: as many as the cluster's resources fit.
        gpus_per_worker: the GPU share of each worker (0.5: two per GPU; 0: CPU workers);
            None: 1 on a cluster with GPUs unless the device is ``cpu``, else 0.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None


@dataclass(frozen=True)
class WorkerShape:
    """What each worker asks Ray for, and how many there are."""

    count: int
    cpus: int
    gpus: float

    @property
    def device(self) -> str:
        return "cuda" if self.gpus > 0 else "cpu"

    def describe(self) -> str:
        gpu = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"{self.count} worker{'s' if self.count != 1 else ''} ({self.cpus} CPU{gpu} each)"


def ray_missing() -> str | None:
    """One line saying how to install Ray when it cannot be imported here, else None."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["ray"] is None (import blocked)
        found = False
    return None if found else f"--engine ray needs Ray: {RAY_INSTALL_HINT}"


def size_workers(
    total: Mapping[str, float],
    nodes: Sequence[Mapping[str, float]],
    threads: int,
    device: str,
    settings: RaySettings,
) -> WorkerShape:
    """The workers for a cluster with resources ``total`` (``ray.cluster_resources()``) on
    ``nodes`` (each node's resources), ``runtime.threads`` and ``runtime.device``.

    Each worker takes ``threads`` CPUs (1 when ``threads`` is 0: on a cluster, workers in
    parallel rather than threads in one) and ``gpus_per_worker`` GPUs; by default there are as
    many workers as the GPUs (GPU workers) or the CPUs (CPU workers) hold. ``ClusterError``
    when no node can hold one worker, or for a device the cluster lacks.
    """
    cpus = threads or 1
    gpus_total = total.get("GPU", 0.0)
    gpus = settings.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if gpus_total > 0 and device != "cpu" else 0.0
    if gpus < 0:
        raise ClusterError(f"--ray-gpus-per-worker must be >= 0, got {gpus:g}")
    if gpus > 0 and device == "cpu":
        raise ClusterError("--ray-gpus-per-worker asks for GPUs but the device is cpu")
    if device == "cuda" and gpus == 0:
        if gpus_total == 0:
            raise ClusterError("--device cuda: the Ray cluster has no GPU")
        raise ClusterError("--device cuda needs --ray-gpus-per-worker above 0")
    if gpus > 1 and not float(gpus).is_integer():
        raise ClusterError(f"--ray-gpus-per-worker above 1 must be whole, got {gpus:g}")
    if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        largest = max((int(n.get("CPU", 0)) for n in nodes), default=0)
        need = f"{cpus} CPU" + (f" and {gpus:g} GPU" if gpus else "")
        raise ClusterError(
            f"no node of the Ray cluster has {need} for one worker (largest: {largest} CPU, "
            f"{max((n.get('GPU', 0) for n in nodes), default=0):g} GPU); lower runtime.threads "
            "or --ray-gpus-per-worker"
        )
    if settings.workers is not None:
        if settings.workers < 1:
            raise ClusterError(f"--workers must be at least 1, got {settings.workers}")
        count = settings.workers
    elif gpus > 0:
        count = sum(math.floor(n.get("GPU", 0) / gpus + 1e-9) for n in nodes)
    else:
        count = sum(int(n.get("CPU", 0)) // cpus for n in nodes)
    return WorkerShape(count=max(count, 1), cpus=cpus, gpus=gpus)


def _is_loopback(address: str | None) -> bool:
    """None (a private instance) or a head at a loopback address (``auto`` is not: the cluster
    ``ray start`` runs here may use the machine's address)."""
    if address is None:
        return True
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    return host in LOOPBACK_HOSTS


def _token_available() -> bool:
    """Whether a Ray authentication token is at hand (as ``ray start`` looks for one)."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


def prepare_environment(address: str | None) -> None:
    """Ray's settings that must be in the environment before ``import ray``.

    No usage statistics. On a private instance or a cluster at a loopback address, every Ray
    service binds to 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; otherwise Ray binds
    the machine's address). Token authentication must match the cluster's (the driver serves
    the workers too, and each side refuses calls without the token it expects): a private
    instance uses it; a cluster on this machine (a loopback address, ``auto``) uses it when a
    token is at hand, as ``ray start`` decided when it started; for a cluster elsewhere it is
    the user's ``RAY_AUTH_MODE``, as with any Ray driver. A value the user set is kept; nothing
    is set once Ray is imported (its settings are read then).
    """
    if "ray" in sys.modules:
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if _is_loopback(address):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    here = _is_loopback(address) or address == "auto"
    if address is None or (here and _token_available()):
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def forwarded_env() -> dict[str, str]:
    """The driver's variables the workers get (``FORWARDED_ENV_PREFIXES``/``_NAMES``)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith(FORWARDED_ENV_PREFIXES) or k in FORWARDED_ENV_NAMES
    }


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (or ``$RAY_ADDRESS``), or start a private instance on
    127.0.0.1 with this machine's CPUs (and GPUs). Returns True when it started one
    (``ray.shutdown()`` then stops it). ``ClusterError`` when the cluster cannot be reached."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address not in (None, "auto"):
        _probe(address)  # Ray itself retries an unreachable head for minutes, silently
    prepare_environment(address)
    import ray

    quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    env = {"env_vars": forwarded_env()}
    try:
        if address is None:
            ray.init(
                address="local",
                _node_ip_address="127.0.0.1",
                runtime_env=env,
                **quiet,
            )
            return True
        ray.init(address=address, runtime_env=env, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local instance"
        raise ClusterError(f"Ray at {where}: cannot connect ({_first_line(exc)})") from None
    return False


def _probe(address: str, timeout_s: float = 10.0) -> None:
    """``ClusterError`` when nothing answers at ``address`` (``HOST:PORT``, ``ray://`` too)."""
    host, sep, port = address.split("://")[-1].rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--ray-address {address}: expected HOST:PORT (or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"--ray-address {address}: no Ray cluster answers ({reason})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def cluster_resources() -> tuple[dict[str, float], list[dict[str, float]]]:
    """(the cluster's total resources, each live node's resources) of the connected cluster."""
    import ray

    nodes = [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
    return dict(ray.cluster_resources()), nodes
