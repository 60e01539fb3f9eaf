"""Connect this process to a Ray cluster: the local one the scripts started, ``RAY_ADDRESS``, or
the Ray already initialised here."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ClusterNotFoundError
from .local_cluster import ClusterState, cluster_processes, default_state_dir, load_state

_REACH_TIMEOUT_SECONDS = 5.0

# Ray's gRPC clients ping a silent connection only after 5 minutes and give up 2 minutes later:
# a call running on a host that is cut off (silence, no reset) waits that long for its answer,
# even after Ray marks the host dead, before Ray retries it elsewhere (benchmarks/cut.py). This
# driver's clients ping sooner; a value the user set wins, PLACEMENT_KEEPALIVE=off keeps Ray's.
_KEEPALIVE_LOCK = threading.Lock()
DRIVER_KEEPALIVE = {"RAY_grpc_client_keepalive_time_ms": "10000",
                    "RAY_grpc_client_keepalive_timeout_ms": "5000"}


@dataclass(frozen=True)
class Connection:
    """Where :func:`connect` connected, and how it found the cluster."""

    address: str
    source: str  # "initialised", "argument", "state-dir", "RAY_ADDRESS"


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=_REACH_TIMEOUT_SECONDS):
            return True
    except (OSError, ValueError):
        return False


def _running_state(state_dir: Path | str | None) -> ClusterState | None:
    state = load_state(state_dir)
    if state is not None and not cluster_processes(state.state_dir):
        raise ClusterNotFoundError(
            f"the local cluster recorded in {state.state_dir} is not running (its processes are "
            f"gone): start it again with scripts/start_cluster.sh {len(state.nodes)}"
        )
    return state


def _use_token_of(state: ClusterState) -> None:
    """Make this process present the local cluster's token.

    Ray reads RAY_AUTH_MODE into its config at import; when Ray is already imported the config is
    re-read, as Ray's own ``_enable_token_auth`` does.
    """
    os.environ.update({k: v for k, v in state.env().items() if k != "RAY_ADDRESS"})
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the token file
    if "ray" in sys.modules:
        # Imported here, not at the top: Ray must not load before the variables above are set.
        from . import _ray

        try:
            _ray.reload_auth_config()
        except Exception:  # noqa: BLE001 - Ray internals moved; a fresh process still works
            pass


def connect(
    address: str | None = None,
    *,
    state_dir: Path | str | None = None,
    namespace: str | None = None,
    log_to_driver: bool = False,
) -> Connection:
    """Connect the calling process to a Ray cluster, in this order of preference:

    1. Ray already initialised in this process (a Ray task or actor, or after ``ray.init()``);
    2. ``address`` given here, or the cluster in ``state_dir`` given here;
    3. ``$RAY_ADDRESS``;
    4. the local cluster in the default state directory (``scripts/start_cluster.sh``).

    The token of a local cluster is taken from its state directory. Raises ClusterNotFoundError,
    naming what was tried and how to start a cluster, when there is none; never waits more than a
    few seconds for an address that does not answer. The driver's gRPC clients are set to ping
    a silent connection after 10 s (``DRIVER_KEEPALIVE``; Ray's own default is 5 minutes), so
    calls running on a host that is cut off come back once Ray marks it dead; variables already
    set win, and ``PLACEMENT_KEEPALIVE=off`` keeps Ray's.

    >>> import placement
    >>> placement.connect().source          # doctest: +SKIP
    'state-dir'
    """
    already = sys.modules.get("ray")
    if already is not None and already.is_initialized():
        return Connection(already.get_runtime_context().gcs_address, "initialised")

    state = None
    if address is None and state_dir is not None:
        state = _running_state(state_dir)
        if state is None:
            raise ClusterNotFoundError(
                f"no cluster was started in {state_dir}: start one with "
                f"scripts/start_cluster.sh 4 --state-dir {state_dir}"
            )
        source = "state-dir"
    elif address is not None:
        source = "argument"
    elif os.environ.get("RAY_ADDRESS"):
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    else:
        state = _running_state(default_state_dir())
        if state is None:
            raise ClusterNotFoundError(
                "no Ray cluster to connect to: Ray is not initialised here, RAY_ADDRESS is not set "
                f"and no local cluster runs in {default_state_dir()}. Start one with "
                "`scripts/start_cluster.sh 4`, set RAY_ADDRESS=host:port, or call ray.init() first"
            )
        source = "state-dir"

    if state is None:
        # A cluster the scripts started at this address lends its token.
        default = load_state(default_state_dir())
        if default is not None and default.address == address:
            state = default
    if state is not None:
        address = state.address
        # Ray reads these when it initialises; they must be set before ray.init.
        _use_token_of(state)
    if address is None:  # unreachable: every branch above sets it or raises
        raise ClusterNotFoundError("no address found: set RAY_ADDRESS")
    if address != "auto" and not _reachable(address):
        raise ClusterNotFoundError(
            f"nothing answers at {address} (from {source}) within {_REACH_TIMEOUT_SECONDS:.0f}s: "
            "check the address, or start a cluster with scripts/start_cluster.sh 4"
        )
    import ray  # only now: Ray reads the token settings above when it loads

    with _driver_keepalive():
        ray.init(
            address=address,
            namespace=namespace,
            log_to_driver=log_to_driver,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
    return Connection(address, source)


@contextlib.contextmanager
def _driver_keepalive() -> Iterator[None]:
    """``DRIVER_KEEPALIVE`` in the environment while Ray initialises this driver (its core worker
    reads them then), unless set already or PLACEMENT_KEEPALIVE=off; put back afterwards, so
    that no process started later inherits them."""
    off = os.environ.get("PLACEMENT_KEEPALIVE", "").strip().lower() in ("off", "0", "false", "no")
    with _KEEPALIVE_LOCK:  # two connect() calls at once: neither removes what the other uses
        added = {} if off else {
            name: value for name, value in DRIVER_KEEPALIVE.items() if name not in os.environ}
        os.environ.update(added)
        try:
            yield
        finally:
            for name in added:
                os.environ.pop(name, None)
