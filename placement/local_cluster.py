"""Labelled multi-node Ray clusters on one machine, for laptops, tests and CI.

Node i listens on its own loopback address (head 127.0.0.10, node i 127.0.0.(10+i)), carries the
custom resource ``node<i>`` and the Ray label ``placement.node=node<i>``. Token authentication is
on by default. Everything a cluster owns lives in its state directory; stopping a cluster ends
exactly the processes that mention that directory (and their children), never another cluster's.

>>> from placement.local_cluster import ClusterSpec, start_cluster, stop_cluster
>>> state = start_cluster(ClusterSpec(nodes=2, state_dir="/tmp/pl-doc"))   # doctest: +SKIP
>>> state.address                                                          # doctest: +SKIP
'127.0.0.10:6390'
>>> stop_cluster("/tmp/pl-doc")                                            # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .errors import LocalClusterError
from .naming import DEFAULT_LABEL_PREFIX, LABEL_KEY, RAY_LABEL_NAME, label_pattern

DEFAULT_FIRST_ADDRESS = "127.0.0.10"
DEFAULT_PORT = 6390  # not Ray's 6379, so a user's own default Ray cluster is left alone
DEFAULT_LABEL_AMOUNT = 1000
DEFAULT_OBJECT_STORE_MB = 128
MIN_OBJECT_STORE_MB = 80  # Ray's minimum is 75 MiB
DEFAULT_START_TIMEOUT = 120.0
MAX_TIMEOUT_SECONDS = 86_400.0
MAX_NODES = 64
# Rough resident memory of one idle node (raylet, agents, log monitor), for the size check.
_NODE_OVERHEAD_MB = 350
# Ray puts unix sockets under <temp-dir>/session_<date>_<pid>/sockets/; Linux allows 107 bytes.
MAX_TEMP_DIR_CHARS = 40
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

STATE_FILE = "cluster.json"
TOKEN_FILE = "token"
LOCK_FILE = "lock"
RAY_TEMP_SUBDIR = "ray"
LOG_SUBDIR = "logs"
# Marks a cluster.json as a record written by this toolkit's start. Stop deletes files only in a
# directory holding such a record for that very directory, and only those the record says start
# created there (of REMOVABLE); lock and logs/ stay.
RECORD_MARKER = "ray-placement local cluster"
RECORD_FORMAT = 1
REMOVABLE = (TOKEN_FILE, RAY_TEMP_SUBDIR)
# What a stopped cluster leaves behind: stopping again finds nothing to do there.
_LEFTOVERS = frozenset({LOCK_FILE, LOG_SUBDIR})
_STOP_FIX = ("pass the --state-dir that `placement cluster start` printed (its cluster.json has "
             f'"written_by": "{RECORD_MARKER}")')
_START_FIX = ("use another --state-dir (an empty or new directory), or move that cluster.json "
              "away if it is yours")


def default_state_dir() -> Path:
    """``$PLACEMENT_STATE_DIR``, else ``/tmp/placement-<uid>/cluster``."""
    configured = os.environ.get("PLACEMENT_STATE_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"placement-{os.getuid()}" / "cluster"


def ray_executable() -> str:
    """The ``ray`` command of the Python running this code (so versions always match)."""
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise LocalClusterError("the `ray` command is not installed: pip install 'ray>=2.60'")
    return found


@dataclass(frozen=True)
class ClusterSpec:
    """What to start. Validated by :meth:`validate` before anything runs."""

    nodes: int
    state_dir: Path | str = field(default_factory=default_state_dir)
    port: int = DEFAULT_PORT
    first_address: str = DEFAULT_FIRST_ADDRESS
    cpus_per_node: int = 1
    object_store_mb: int = DEFAULT_OBJECT_STORE_MB
    label_amount: int = DEFAULT_LABEL_AMOUNT
    label_prefix: str = DEFAULT_LABEL_PREFIX
    dashboard: bool = False
    token_auth: bool = True
    # Custom resources on every node, e.g. {"accel": 1}.
    extra_resources: dict[str, int] = field(default_factory=dict)
    # False: plain `ray start` nodes, without the node<i> resource and the placement.node label,
    # as on a cluster the toolkit did not set up (tests use it to check policies there).
    labelled: bool = True
    # Ray labels of node i (``ray start --labels``), e.g. ({"zone": "z1"}, {"zone": "z2"}).
    node_labels: tuple[dict[str, str], ...] = ()
    # CPUs of node i where given (nodes of unequal size), else cpus_per_node.
    node_cpus: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().absolute())
        object.__setattr__(self, "extra_resources", dict(self.extra_resources or {}))
        object.__setattr__(self, "node_labels", tuple(dict(labels)
                                                      for labels in self.node_labels or ()))
        object.__setattr__(self, "node_cpus", tuple(self.node_cpus or ()))

    def cpus_of(self, index: int) -> int:
        """Node ``index``'s CPUs: its own in node_cpus, else cpus_per_node."""
        return self.node_cpus[index] if index < len(self.node_cpus) else self.cpus_per_node

    def node_address(self, index: int) -> str:
        return str(ipaddress.IPv4Address(self.first_address) + index)

    def node_label(self, index: int) -> str:
        return f"{self.label_prefix}{index}"

    def validate(self) -> None:
        """Raise LocalClusterError naming the fix for any value that cannot work."""
        nodes = self.nodes
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise LocalClusterError(
                f"the number of nodes must be a positive whole number, got {nodes!r}: "
                "e.g. scripts/start_cluster.sh 4"
            )
        if nodes > MAX_NODES:
            raise LocalClusterError(
                f"{nodes} nodes is more than one machine should run ({MAX_NODES} at most; each is "
                "a full Ray node): use fewer nodes, or a real multi-host cluster"
            )
        need_mb = nodes * (_NODE_OVERHEAD_MB + self.object_store_mb)
        have_mb = psutil.virtual_memory().available // 2**20
        if need_mb > 0.8 * have_mb:
            raise LocalClusterError(
                f"{nodes} nodes need about {need_mb} MiB of memory, this machine has {have_mb} MiB "
                "available: use fewer nodes or a smaller --object-store-mb"
            )
        try:
            first = ipaddress.IPv4Address(self.first_address)
        except ValueError:
            raise LocalClusterError(
                f"--first-address {self.first_address!r} is not an IPv4 address: "
                "use e.g. 127.0.0.10"
            ) from None
        addresses = (
            [ipaddress.IPv4Address(int(first) + i) for i in range(nodes)]
            if int(first) + nodes < 2**32
            else []
        )
        if not addresses or not all(a in _LOOPBACK for a in addresses):
            raise LocalClusterError(
                f"local clusters use loopback addresses only; {nodes} nodes from "
                f"{self.first_address} leave 127.0.0.0/8: use --first-address 127.0.0.10"
            )
        # Ray rewrites 127.0.0.1 to the machine's routable address; .0 and .255 are not host
        # addresses.
        localhost = ipaddress.IPv4Address("127.0.0.1")
        if any(a == localhost or int(a) & 0xFF in (0, 255) for a in addresses):
            raise LocalClusterError(
                f"{nodes} nodes from {self.first_address} would use 127.0.0.1 or an address ending "
                "in .0 or .255: use --first-address 127.0.0.10"
            )
        port = self.port
        if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
            raise LocalClusterError(
                f"--port must be between 1024 and 65535, got {port!r}: e.g. --port {DEFAULT_PORT}"
            )
        for name, option, least in (("cpus_per_node", "--cpus", 0),
                                    ("label_amount", "--label-amount", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise LocalClusterError(
                    f"{name.replace('_', '-')} ({option}) must be a whole number (Ray truncates "
                    f"resource totals to whole units), got {value!r}: e.g. {option} {least + 1}"
                )
            if value < least:
                raise LocalClusterError(
                    f"{name.replace('_', '-')} ({option}) must be >= {least}, got {value}: "
                    f"e.g. {option} {least + 1}"
                )
        for index, cpus in enumerate(self.node_cpus):
            if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 0:
                raise LocalClusterError(f"node {index}'s CPUs must be a whole number >= 0, got "
                                        f"{cpus!r}: e.g. node_cpus=(1, 2, 3, 4)")
        store = self.object_store_mb
        if isinstance(store, bool) or not isinstance(store, int) or store < MIN_OBJECT_STORE_MB:
            raise LocalClusterError(
                f"--object-store-mb must be a whole number >= {MIN_OBJECT_STORE_MB} (Ray's "
                f"minimum is 75 MiB), got {store!r}: e.g. --object-store-mb "
                f"{DEFAULT_OBJECT_STORE_MB}"
            )
        if not self.label_prefix.isidentifier():
            raise LocalClusterError(
                f"--label-prefix must be a plain name such as 'node', got {self.label_prefix!r}"
            )
        reserved = ("CPU", "GPU", "memory", "object_store_memory")
        for name, amount in self.extra_resources.items():
            if name in reserved or label_pattern(self.label_prefix).match(name):
                raise LocalClusterError(
                    f"--resources cannot set {name!r}: use --cpus for CPUs; "
                    "node labels are set per node"
                )
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
                raise LocalClusterError(
                    f"--resources {name!r} must be a whole number >= 1 "
                    f"(Ray truncates node totals), got {amount!r}"
                )
        for index, labels in enumerate(self.node_labels):
            for key, value in labels.items():
                # The pattern has no prefix/, so ray.io/ keys (Ray's own) are refused too.
                if (not _RAY_LABEL.fullmatch(str(key)) or not _RAY_LABEL.fullmatch(str(value))
                        or key == LABEL_KEY):
                    raise LocalClusterError(
                        f"node {index}'s label {key!r}={value!r} cannot be given: use letters, "
                        f"digits, - _ . (not {LABEL_KEY!r} or ray.io/ keys), e.g. zone=z1")
        temp_dir = str(Path(self.state_dir) / RAY_TEMP_SUBDIR)
        if len(temp_dir) > MAX_TEMP_DIR_CHARS:
            longest = MAX_TEMP_DIR_CHARS - len(RAY_TEMP_SUBDIR) - 1
            raise LocalClusterError(
                f"state directory {self.state_dir} is too long for Ray's unix sockets (107 bytes): "
                f"use a --state-dir of at most {longest} characters, e.g. /tmp/pl-1"
            )


# A Ray label key or value as local clusters accept them (no prefix/).
_RAY_LABEL = re.compile(RAY_LABEL_NAME)


@dataclass(frozen=True)
class ClusterState:
    """What a started cluster recorded in ``<state_dir>/cluster.json``."""

    state_dir: Path
    address: str
    nodes: tuple[dict[str, str], ...]  # {"label": "node0", "address": "127.0.0.10"}
    token_path: Path | None
    started_at: float
    start_seconds: float
    spec: dict[str, Any]
    # Which of token and ray/ this cluster's start created in state_dir: all stop may delete.
    created: tuple[str, ...] = ()

    @property
    def temp_dir(self) -> Path:
        return self.state_dir / RAY_TEMP_SUBDIR

    def env(self) -> dict[str, str]:
        """Environment variables a process needs to reach this cluster (address and token)."""
        env = {"RAY_ADDRESS": self.address, "RAY_USAGE_STATS_ENABLED": "0"}
        if self.token_path is not None:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path))
        return env

    def connect_line(self) -> str:
        exports = " ".join(
            f"{k}={v}" for k, v in self.env().items() if k != "RAY_USAGE_STATS_ENABLED"
        )
        return f"export {exports}   # then ray.init() or placement.connect()"


def load_state(state_dir: Path | str | None = None) -> ClusterState | None:
    """The recorded state of the cluster in ``state_dir``, or None when none was started there."""
    path = Path(state_dir or default_state_dir()) / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LocalClusterError(
            f"cannot read {path}: {exc}; remove it and start the cluster again"
        ) from exc
    return ClusterState(
        state_dir=Path(raw["state_dir"]),
        address=raw["address"],
        nodes=tuple(raw["nodes"]),
        token_path=Path(raw["token_path"]) if raw.get("token_path") else None,
        started_at=raw["started_at"],
        start_seconds=raw["start_seconds"],
        spec=raw["spec"],
        created=tuple(raw.get("created") or ()),
    )


def recorded_cluster(state_dir: Path, fix: str = _STOP_FIX) -> ClusterState | None:
    """The cluster record this toolkit's start wrote in ``state_dir``; None when it holds no
    cluster.json. Raises LocalClusterError (ending with ``fix``) when cluster.json is there but
    is not such a record for this very directory: then nothing there may be deleted."""
    path = state_dir / STATE_FILE
    if not present(path):
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problem: str | None = f"it cannot be read as JSON ({exc})"
    else:
        problem = _record_problem(raw, state_dir)
    if problem is not None:
        raise LocalClusterError(
            f"{path} is not a cluster record of placement: {problem}; nothing was stopped or "
            f"deleted: {fix}"
        )
    return load_state(state_dir)


_RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "address": str, "nodes": list, "spec": dict, "created": list,
    "started_at": (int, float), "start_seconds": (int, float),
}


def present(path: Path) -> bool:
    """Whether anything has this name: a file, a directory, or a symlink (dangling too)."""
    return path.exists() or path.is_symlink()


def _record_problem(raw: Any, state_dir: Path) -> str | None:
    """Why ``raw`` is not a record start wrote for ``state_dir``, or None when it is."""
    if not isinstance(raw, dict):
        return "it is not a JSON object"
    if raw.get("written_by") != RECORD_MARKER:
        return f'it has no "written_by": "{RECORD_MARKER}" marker'
    if raw.get("format") != RECORD_FORMAT:
        return f"its format is {raw.get('format')!r}, this placement writes {RECORD_FORMAT}"
    recorded = raw.get("state_dir")
    if not isinstance(recorded, str) or Path(recorded).resolve() != state_dir.resolve():
        return f"it records the state directory {recorded!r}, not {str(state_dir)!r}"
    for key, kind in _RECORD_FIELDS.items():
        if not isinstance(raw.get(key), kind):
            return f"its field {key!r} is missing or malformed"
    if not all(isinstance(name, str) and name in REMOVABLE for name in raw["created"]):
        return f"it lists files start never creates: {raw['created']!r}"
    token = raw.get("token_path")
    if token is not None and (not isinstance(token, str)
                              or Path(token).resolve() != (state_dir / TOKEN_FILE).resolve()):
        return f"its token_path {token!r} is not {str(state_dir / TOKEN_FILE)!r}"
    return None


# -- processes --------------------------------------------------------------------------------


def _mentions(cmdline: list[str], directory: str) -> bool:
    """Whether a command line names ``directory`` itself or a path inside it."""
    inside = directory + os.sep
    for arg in cmdline:
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if (
            value == directory
            or value.startswith(inside)
            or f"={inside}" in arg
            or arg.endswith(f"={directory}")
        ):
            return True
    return False


def _alive(proc: psutil.Process) -> bool:
    try:
        # bool(): psutil has no type information, so mypy sees Any; both operands are bools.
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def cluster_processes(state_dir: Path | str | None = None) -> list[psutil.Process]:
    """Live processes of the cluster in ``state_dir``: those of this user whose command line names
    its Ray temp dir, and all their descendants (workers and agents rename themselves)."""
    temp_dir = str(Path(state_dir or default_state_dir()).absolute() / RAY_TEMP_SUBDIR)
    uid = os.getuid()
    roots: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline", "uids"]):
        try:
            if proc.info["uids"] is None or proc.info["uids"].real != uid:
                continue
            if proc.pid != os.getpid() and _mentions(proc.info["cmdline"] or [], temp_dir):
                roots.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    found = {p.pid: p for p in roots}
    for root in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in root.children(recursive=True):
                found.setdefault(child.pid, child)
    return [p for p in found.values() if _alive(p)]


def node_processes(state_dir: Path | str, node_address: str) -> list[psutil.Process]:
    """The processes of one node of a local cluster: its raylet (with workers and agents) and the
    daemons started for it; killing them is how tests make a node die."""
    raylets = []
    for proc in cluster_processes(state_dir):
        with contextlib.suppress(psutil.NoSuchProcess):
            cmdline = proc.cmdline()
            is_raylet = bool(cmdline) and Path(cmdline[0]).name == "raylet"
            if is_raylet and f"--node_ip_address={node_address}" in cmdline:
                raylets.append(proc)
    found = {}
    for raylet in raylets:
        found[raylet.pid] = raylet
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in raylet.children(recursive=True):
                found[child.pid] = child
    return list(found.values())


def kill_node(state_dir: Path | str, node_address: str) -> int:
    """Crash one node of a local cluster: SIGKILL its raylet, workers and agents (tests of node
    death use it). Returns how many processes were killed."""
    procs = node_processes(state_dir, node_address)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)
    return len(procs)


def end_processes(procs: list[psutil.Process], grace: float = 10.0) -> list[str]:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns a line per process ended."""
    described = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            described.append(f"pid {proc.pid} {proc.name()}")
            proc.terminate()
    deadline = time.monotonic() + grace
    remaining = list(procs)
    while remaining and time.monotonic() < deadline:
        remaining = [p for p in remaining if _alive(p)]
        time.sleep(0.1)
    for proc in remaining:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs([p for p in remaining], timeout=5)
    return described


# -- start and stop ---------------------------------------------------------------------------


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    # No O_TRUNC: a file of that name that is not ours keeps its contents.
    fd = os.open(state_dir / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LocalClusterError(
                f"another start or stop is running on {state_dir}: wait for it to finish"
            ) from None
        yield


def _port_in_use(port: int) -> bool:
    # Ray's GCS listens on every interface, so the port must be free on all of them.
    # SO_REUSEADDR as gRPC sets it: sockets in TIME-WAIT from a stopped cluster do not count.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return True
    return False


def _write_token(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    os.chmod(path, 0o600)  # also when the file existed with looser bits


def _ray_start_args(spec: ClusterSpec, index: int, address: str) -> list[str]:
    label = spec.node_label(index)
    args = [
        ray_executable(), "start",
        "--node-ip-address", spec.node_address(index),
        "--temp-dir", str(Path(spec.state_dir) / RAY_TEMP_SUBDIR),
        "--num-cpus", str(spec.cpus_of(index)),
        "--object-store-memory", str(spec.object_store_mb * 2**20),
        "--disable-usage-stats",
    ]
    labels = dict(spec.node_labels[index]) if index < len(spec.node_labels) else {}
    if spec.labelled:
        args += ["--resources", json.dumps({**spec.extra_resources, label: spec.label_amount})]
        labels[LABEL_KEY] = label
    elif spec.extra_resources:
        args += ["--resources", json.dumps(spec.extra_resources)]
    if labels:
        args += ["--labels", ",".join(f"{key}={value}" for key, value in labels.items())]
    if index == 0:
        args += ["--head", "--port", str(spec.port),
                 "--include-dashboard", str(spec.dashboard).lower()]
    else:
        args += ["--address", address]
    return args


def ray_env(token_path: Path | None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"
    }
    env["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing leaves the machine
    if token_path is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path))
    return env


def run_ray_start(
    args: list[str], env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    # A log file, not a pipe: `ray start` leaves daemons behind that would hold a pipe open.
    with open(log_path, "w") as log:
        return subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def probe_nodes(env: dict[str, str], expect: int, timeout: float,
                node_id: str | None = None) -> list[dict[str, Any]]:
    """Connect a throwaway driver (its own process: Ray caches the token per process) and wait
    until ``expect`` nodes are alive (and ``node_id`` among them, when given). Returns the alive
    nodes' records (id, address, resources, labels); raises on timeout or a refused token."""
    cmd = [sys.executable, "-m", "placement.probe", str(expect), str(timeout)]
    cmd += [node_id] if node_id else []
    try:
        done = subprocess.run(
            cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout + 30,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise LocalClusterError(
            f"no answer from the cluster at {env.get('RAY_ADDRESS')} within {timeout:.0f}s"
        ) from None
    if done.returncode != 0:
        stderr = done.stderr.strip()
        if "InvalidAuthToken" in stderr:  # Ray logs it, then raises a bare ConnectionError
            raise LocalClusterError(
                f"the cluster at {env.get('RAY_ADDRESS')} refused the auth token "
                f"({env.get('RAY_AUTH_TOKEN_PATH') or 'none given'}): give the token file "
                "of that cluster"
            )
        raise LocalClusterError(stderr.splitlines()[-1] if stderr else "probe failed")
    alive: list[dict[str, Any]] = json.loads(done.stdout)
    return alive


def start_cluster(
    spec: ClusterSpec,
    timeout: float = DEFAULT_START_TIMEOUT,
    say: Callable[[str], None] = lambda _: None,
) -> ClusterState:
    """Start ``spec.nodes`` labelled nodes and wait until all are alive (at most ``timeout`` s).

    Refuses a state directory holding a cluster.json or a token this toolkit did not write."""
    spec.validate()
    check_timeout(timeout)
    state_dir = Path(spec.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    with locked(state_dir):
        running = cluster_processes(state_dir)
        if running:
            raise LocalClusterError(
                f"a cluster is already running in {state_dir} ({len(running)} processes): stop it "
                f"with scripts/stop_cluster.sh --state-dir {state_dir}, or use another --state-dir"
            )
        if _port_in_use(spec.port):
            raise LocalClusterError(
                f"port {spec.port} is already in use: pick a free one with --port, "
                "or stop what listens there"
            )
        previous = recorded_cluster(state_dir, fix=_START_FIX)
        owned = previous.created if previous is not None else ()
        token_file = state_dir / TOKEN_FILE
        if present(token_file) and TOKEN_FILE not in owned:
            raise LocalClusterError(
                f"{token_file} exists and placement did not write it; nothing was changed: "
                "use another --state-dir, or move that file away"
            )
        if not spec.token_auth and TOKEN_FILE in owned:
            token_file.unlink(missing_ok=True)  # ours, from an earlier start with a token
        # What stop may delete: what this start creates, or an earlier start of ours created.
        created = tuple(
            name for name in REMOVABLE
            if (spec.token_auth if name == TOKEN_FILE
                else name in owned or not present(state_dir / name))
        )
        log_dir = state_dir / LOG_SUBDIR
        log_dir.mkdir(exist_ok=True)
        token_path = token_file if spec.token_auth else None
        address = f"{spec.node_address(0)}:{spec.port}"
        state = ClusterState(
            state_dir=state_dir,
            address=address,
            nodes=tuple(
                {"label": spec.node_label(i), "address": spec.node_address(i)}
                for i in range(spec.nodes)
            ),
            token_path=token_path,
            started_at=time.time(),
            start_seconds=0.0,
            spec={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items()},
            created=created,
        )
        # Recorded before anything is created: stop cleans up after a failed start too.
        write_state(state)
        if token_path is not None:
            _write_token(token_path)
        env = ray_env(token_path)
        began = time.monotonic()
        try:
            say(f"starting head {spec.node_label(0)} at {address}")
            _wait_ray_start(spec, [0], address, env, log_dir, began + timeout)
            # One node at a time: nodes of one session race for the same unix socket names.
            for index in range(1, spec.nodes):
                say(f"starting {spec.node_label(index)} at {spec.node_address(index)}")
                _wait_ray_start(spec, [index], address, env, log_dir, began + timeout)
            remaining = max(5.0, timeout - (time.monotonic() - began))
            alive = probe_nodes({**env, "RAY_ADDRESS": address}, spec.nodes, remaining)
        except BaseException:
            end_processes(cluster_processes(state_dir))
            raise
        state = dataclasses.replace(state, started_at=time.time(),
                                    start_seconds=round(time.monotonic() - began, 2))
        write_state(state)
        say(f"{len(alive)} nodes alive after {state.start_seconds:.1f}s")
        return state


def write_state(state: ClusterState) -> None:
    record = {"written_by": RECORD_MARKER, "format": RECORD_FORMAT, **asdict(state),
              "state_dir": str(state.state_dir), "created": list(state.created),
              "token_path": str(state.token_path) if state.token_path else None}
    (state.state_dir / STATE_FILE).write_text(json.dumps(record, indent=2))


def _wait_ray_start(
    spec: ClusterSpec,
    indexes: list[int],
    address: str,
    env: dict[str, str],
    log_dir: Path,
    deadline: float,
) -> None:
    started = {
        i: run_ray_start(
            _ray_start_args(spec, i, address), env, log_dir / f"start-{spec.node_label(i)}.log"
        )
        for i in indexes
    }
    for i, proc in started.items():
        log_path = log_dir / f"start-{spec.node_label(i)}.log"
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            raise LocalClusterError(
                f"{spec.node_label(i)} did not start in time: read {log_path} and "
                f"{Path(spec.state_dir) / RAY_TEMP_SUBDIR}/session_latest/logs/"
            ) from None
        if code != 0:
            tail = log_path.read_text().strip().splitlines()[-3:]
            raise LocalClusterError(
                f"`ray start` for {spec.node_label(i)} failed (exit {code}): read {log_path}; "
                "it ends with: " + " | ".join(tail)
            )


def add_node(
    state_dir: Path | str | None = None, timeout: float = DEFAULT_START_TIMEOUT
) -> ClusterState:
    """Start one more node (the next label and address) in the running cluster in ``state_dir``."""
    check_timeout(timeout)
    state_dir = Path(state_dir or default_state_dir()).absolute()
    state = load_state(state_dir)
    if state is None or not cluster_processes(state_dir):
        raise LocalClusterError(
            f"no cluster runs in {state_dir}: start one with scripts/start_cluster.sh N"
        )
    if state.spec.get("joined"):  # a node `placement cluster join` started: not a cluster
        raise LocalClusterError(
            f"{state_dir} holds one node that joined {state.address}: to add another, run "
            "`placement cluster join` again with its own --state-dir"
        )
    fields = {k: v for k, v in state.spec.items() if k in ClusterSpec.__dataclass_fields__}
    spec = ClusterSpec(**{**fields, "nodes": len(state.nodes) + 1})
    spec.validate()
    index = len(state.nodes)
    with locked(state_dir):
        _wait_ray_start(spec, [index], state.address, ray_env(state.token_path),
                        state_dir / LOG_SUBDIR, time.monotonic() + timeout)
        probe_nodes(state.env(), spec.nodes, timeout)
        grown = ClusterState(
            state_dir=state_dir, address=state.address,
            nodes=state.nodes
            + ({"label": spec.node_label(index), "address": spec.node_address(index)},),
            token_path=state.token_path, started_at=state.started_at,
            start_seconds=state.start_seconds,
            spec={**state.spec, "nodes": spec.nodes}, created=state.created,
        )
        write_state(grown)
        return grown


def stop_cluster(state_dir: Path | str | None = None, keep_logs: bool = False) -> list[str]:
    """End every process of the cluster in ``state_dir`` and nothing else; returns what was
    ended. Then delete what its start created there and nothing else: its cluster.json, its token
    and (unless ``keep_logs``) Ray's temp dir ``ray/``, each only if start created it.

    Refuses, deleting and ending nothing, a directory whose cluster.json this toolkit did not
    write for it, or that has no cluster.json but holds more than a stopped cluster leaves (the
    lock file and logs/): a user's directory given by mistake.
    """
    state_dir = Path(state_dir or default_state_dir()).absolute()
    if not state_dir.exists():
        return []
    if not state_dir.is_dir():
        raise LocalClusterError(f"{state_dir} is not a directory; nothing was stopped or "
                                f"deleted: {_STOP_FIX}")
    if recorded_cluster(state_dir) is None:  # read only: no lock file in a directory not ours
        return _nothing_recorded(state_dir)
    with locked(state_dir):
        state = recorded_cluster(state_dir)  # again: another start or stop may have run
        if state is None:
            return _nothing_recorded(state_dir)
        ended = end_processes(cluster_processes(state_dir))
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        if TOKEN_FILE in state.created:
            (state_dir / TOKEN_FILE).unlink(missing_ok=True)
        if RAY_TEMP_SUBDIR in state.created and not keep_logs:
            shutil.rmtree(state_dir / RAY_TEMP_SUBDIR, ignore_errors=True)
        return ended


def _nothing_recorded(state_dir: Path) -> list[str]:
    """Stop where no cluster is recorded: nothing to do when the directory holds at most what a
    stopped cluster leaves and no process of a cluster runs there; refused otherwise."""
    running = cluster_processes(state_dir)
    others = sorted(p.name for p in state_dir.iterdir() if p.name not in _LEFTOVERS)
    if not running and not others:
        return []
    if running:
        pids = " ".join(str(p.pid) for p in running[:8])
        raise LocalClusterError(
            f"{state_dir} holds no cluster record of placement ({STATE_FILE}), but processes "
            f"with their Ray temp dir there run (pids {pids}); nothing was stopped or deleted: "
            f"{_STOP_FIX}, or if those processes are yours end them with `kill {pids}`"
        )
    shown = ", ".join(others[:8]) + (" and more" if len(others) > 8 else "")
    raise LocalClusterError(
        f"{state_dir} holds no cluster record of placement ({STATE_FILE}), but holds {shown}; "
        f"nothing was stopped or deleted: {_STOP_FIX}, or if you stopped this cluster already "
        "there is nothing left to do"
    )


def check_timeout(timeout: float) -> float:
    """Seconds to wait for nodes: a number more than 0 and at most a day."""
    if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            or not 0 < timeout <= MAX_TIMEOUT_SECONDS):
        raise LocalClusterError(
            f"timeout must be a number of seconds more than 0 and at most "
            f"{MAX_TIMEOUT_SECONDS:.0f} (a day), got {timeout!r}: e.g. "
            f"timeout={DEFAULT_START_TIMEOUT:.0f}"
        )
    return float(timeout)
