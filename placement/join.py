"""Join this host to a running Ray cluster as one more node, with the next free ``node<i>`` label.

The node gets what a node of ``placement cluster start`` has: the custom resource ``node<i>`` (the
amount the cluster's labelled nodes have) and the Ray label ``placement.node=node<i>``, plus the
Ray labels you give. The token is read from a file and reaches ``ray start`` through the
environment, never its command line. Everything the node owns lives in its own state directory,
so ``placement cluster stop --state-dir DIR`` ends exactly this node (Ray 2.60 honours a worker
node's own ``--temp-dir``: every process of the node names it) and deletes only what join made.

>>> from placement.join import JoinSpec, join_cluster
>>> node = join_cluster(JoinSpec(head="10.0.0.5:6379", token_file="/etc/ray/token",
...                              labels={"zone": "z1"}, state_dir="/tmp/pl-join"))  # doctest: +SKIP
>>> node.label, node.stop_command()                                                # doctest: +SKIP
('node4', 'placement cluster stop --state-dir /tmp/pl-join')
"""
from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import local_cluster as lc
from .errors import LocalClusterError
from .naming import DEFAULT_LABEL_PREFIX, LABEL_KEY, RAY_LABEL_NAME, label_pattern

# Label choices: follow the cluster (label when its nodes are labelled), or never.
LABEL_AUTO = "auto"
LABEL_NONE = "none"
# Two hosts that read the cluster at once pick the same label; the later one to register sees the
# earlier and backs off. This many tries, a random pause between, before giving up.
JOIN_ATTEMPTS = 4
_RESERVED_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
_LABELS_EXAMPLE = "--labels zone=z1,rack=r2"

# Ray's label syntax: a name as naming.RAY_LABEL_NAME; a key may have a DNS-subdomain prefix/.
_LABEL_NAME = re.compile(RAY_LABEL_NAME)
# Ray's prefix pattern makes each dot-separated part optional (so it takes "a..b"); kept as is.
_LABEL_PREFIX = re.compile(rf"({_LABEL_NAME.pattern})?(\.({_LABEL_NAME.pattern})?)*")


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` as ``ray start --labels`` takes it, checked against Ray's syntax. Keys Ray
    reserves (``ray.io/``) and the one join sets itself (``placement.node``) are refused.

    >>> parse_labels("zone=z1,rack=r2")
    {'zone': 'z1', 'rack': 'r2'}
    >>> parse_labels("zone=z 1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: --labels: value 'z 1' of 'zone' is not a Ray label value: ...
    """
    labels: dict[str, str] = {}
    if not text.strip():
        return labels
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or "=" in value or not key:
            raise ValueError(f"--labels: {pair!r} is not key=value: write comma-separated "
                             f"key=value pairs, e.g. {_LABELS_EXAMPLE}")
        if key in labels:
            raise ValueError(f"--labels: {key!r} is given twice: give each key once")
        labels[key] = value
    return check_labels(labels)


def check_labels(labels: Mapping[Any, Any]) -> dict[str, str]:
    """Each key and value of ``labels`` as Ray's syntax allows (what ``parse_labels`` and
    ``JoinSpec`` accept), checked one by one: a value holding a comma would pass as two."""
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"--labels: {key!r}={value!r}: keys and values must be strings, "
                             f"e.g. {_LABELS_EXAMPLE}")
        problem = _label_key_problem(key)
        if problem:
            raise ValueError(f"--labels: {problem}, e.g. {_LABELS_EXAMPLE}")
        if value and not _LABEL_NAME.fullmatch(value):  # Ray takes an empty value
            raise ValueError(
                f"--labels: value {value!r} of {key!r} is not a Ray label value: 1-63 letters, "
                f"digits, - _ . starting and ending with a letter or digit, e.g. {_LABELS_EXAMPLE}")
    return dict(labels)


def _label_key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix)):
        return f"the prefix {prefix!r} of {key!r} is not a DNS subdomain (names separated by .)"
    if not _LABEL_NAME.fullmatch(name):
        return (f"key {key!r} is not a Ray label key: 1-63 letters, digits, - _ . starting and "
                "ending with a letter or digit, after an optional prefix/")
    if key.startswith("ray.io/"):
        return f"key {key!r} is reserved for Ray's own labels: use a key of your own"
    if key == LABEL_KEY:
        return f"key {LABEL_KEY!r} is set by join itself (--no-label leaves it off)"
    return None


# host:port, the host a name or IPv4 address (letters, digits, - and .), or [IPv6]:port.
_HEAD = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*"
                   r"[A-Za-z0-9])?)):(?P<port>[0-9]{1,5})")


def parse_head(text: str) -> str:
    """The head's GCS address, ``host:port`` with the port given.

    >>> parse_head("10.0.0.5:6379")
    '10.0.0.5:6379'
    """
    found = _HEAD.fullmatch(text.strip())
    port = int(found.group("port")) if found else 0
    if found is None or not 1 <= port <= 65535:
        raise ValueError(f"HEAD_ADDRESS must be host:port of the head's GCS (what `ray start "
                         f"--head` printed), got {text!r}: e.g. 10.0.0.5:6379")
    if found.group("v6") is not None:
        try:
            ipaddress.IPv6Address(found.group("v6"))
        except ValueError:
            raise ValueError(f"HEAD_ADDRESS {text!r} has no IPv6 address inside [ ]: e.g. "
                             "[fd00::5]:6379") from None
        return f"[{found.group('v6')}]:{port}"
    return f"{found.group('host')}:{port}"


def default_join_dir() -> Path:
    """``/tmp/placement-<uid>/join``: beside the local cluster's default, not inside it."""
    return Path(tempfile.gettempdir()) / f"placement-{os.getuid()}" / "join"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: on the network


@dataclass(frozen=True)
class JoinSpec:
    """What to join, and the node to start. Validated by :meth:`validate` before anything runs."""

    head: str
    token_file: Path | str
    state_dir: Path | str = field(default_factory=lambda: default_join_dir())
    labels: Mapping[str, str] = field(default_factory=dict)
    node_ip_address: str | None = None  # None: Ray finds this host's address
    cpus: int | None = None  # None: Ray counts them
    object_store_mb: int | None = None  # None: Ray's default (30% of memory)
    resources: Mapping[str, int] = field(default_factory=dict)
    label: str = LABEL_AUTO  # LABEL_AUTO or LABEL_NONE
    label_prefix: str = DEFAULT_LABEL_PREFIX
    timeout: float = lc.DEFAULT_START_TIMEOUT

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().absolute())
        object.__setattr__(self, "token_file", Path(self.token_file).expanduser().absolute())
        object.__setattr__(self, "labels", dict(self.labels or {}))
        object.__setattr__(self, "resources", dict(self.resources or {}))

    def validate(self) -> None:
        """Raise LocalClusterError naming the fix for any value that cannot work."""
        try:
            head = parse_head(self.head)
            check_labels(self.labels)
        except ValueError as exc:
            raise LocalClusterError(str(exc)) from None
        lc.check_timeout(self.timeout)
        self._check_address(head.rpartition(":")[0])
        if self.label not in (LABEL_AUTO, LABEL_NONE):
            raise LocalClusterError(f"label must be {LABEL_AUTO!r} or {LABEL_NONE!r}, "
                                    f"got {self.label!r}")
        if not self.label_prefix.isidentifier():
            raise LocalClusterError(
                f"--label-prefix must be a plain name such as 'node', got {self.label_prefix!r}")
        for name, value, least in (("--cpus", self.cpus, 0),
                                   ("--object-store-mb", self.object_store_mb,
                                    lc.MIN_OBJECT_STORE_MB)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < least):
                raise LocalClusterError(f"{name} must be a whole number >= {least}, got "
                                        f"{value!r}: e.g. {name} {max(least, 2)}")
        for name, amount in self.resources.items():
            if name in _RESERVED_RESOURCES or label_pattern(self.label_prefix).match(name):
                raise LocalClusterError(f"--resources cannot set {name!r}: use --cpus for CPUs; "
                                        "the node<i> label is chosen by join")
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
                raise LocalClusterError(f"--resources {name!r} must be a whole number >= 1 "
                                        f"(Ray truncates node totals), got {amount!r}")
        temp_dir = str(Path(self.state_dir) / lc.RAY_TEMP_SUBDIR)
        if len(temp_dir) > lc.MAX_TEMP_DIR_CHARS:
            longest = lc.MAX_TEMP_DIR_CHARS - len(lc.RAY_TEMP_SUBDIR) - 1
            raise LocalClusterError(
                f"state directory {self.state_dir} is too long for Ray's unix sockets (107 "
                f"bytes): use a --state-dir of at most {longest} characters, e.g. /tmp/pl-join")
        self._check_token_file()

    def _check_address(self, head_host: str) -> None:
        node = self.node_ip_address
        if node is not None:
            try:
                address = ipaddress.ip_address(node)
            except ValueError:
                raise LocalClusterError(
                    f"--node-ip-address must be this host's IP address, got {node!r}: e.g. "
                    "--node-ip-address 10.0.0.6, or leave it out and Ray finds it") from None
            if address.is_loopback and not _loopback(head_host):
                raise LocalClusterError(
                    f"--node-ip-address {node} is loopback, but the head {head_host} is not: "
                    "other hosts cannot reach it; leave it out and Ray finds this host's address")
        if _loopback(head_host):
            # Same machine: the node must stay on loopback too, at an address Ray keeps
            # (it rewrites 127.0.0.1 to the routable address).
            if node is None or not ipaddress.ip_address(node).is_loopback \
                    or node == "127.0.0.1" or int(ipaddress.ip_address(node)) & 0xFF in (0, 255):
                raise LocalClusterError(
                    f"the head {head_host} is on loopback: give this node a loopback address of "
                    "its own with --node-ip-address, e.g. 127.0.0.12 (not 127.0.0.1, .0 or .255)")

    def _check_token_file(self) -> None:
        path = Path(self.token_file)
        fix = ("copy the head's token file here (scp head:PATH " f"{path}; chmod 600 {path})")
        try:
            mode = path.stat().st_mode
            if not stat.S_ISREG(mode):
                raise LocalClusterError(f"--token-file {path} is not a file: {fix}")
            text = path.read_text().strip()
        except FileNotFoundError:
            raise LocalClusterError(f"--token-file {path} does not exist: {fix}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise LocalClusterError(f"cannot read --token-file {path} ({exc}): {fix}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise LocalClusterError(f"--token-file {path} can be read by others (mode "
                                    f"{stat.S_IMODE(mode):o}); it is a password: chmod 600 {path}")
        if not text or any(c.isspace() for c in text):
            raise LocalClusterError(f"--token-file {path} does not hold one token: {fix}")


@dataclass(frozen=True)
class JoinedNode:
    """The node join started: where it runs, its label (None: unlabelled) and its state."""

    state: lc.ClusterState
    node_id: str
    address: str
    label: str | None
    labels: dict[str, str]

    def stop_command(self) -> str:
        return f"placement cluster stop --state-dir {self.state.state_dir}"


def choose_label(nodes: Iterable[Mapping[str, Any]], prefix: str = DEFAULT_LABEL_PREFIX,
                 mode: str = LABEL_AUTO) -> tuple[str | None, int]:
    """The lowest ``<prefix><i>`` no alive node holds (as resource or ``placement.node`` label),
    and the amount of it the labelled nodes have (the largest, so every pin that fits one fits
    this node). ``(None, 0)`` with ``mode`` LABEL_NONE, or LABEL_AUTO on a cluster with no
    labelled node: a lone labelled node would change nothing for ``backend="auto"`` (it uses
    node ids while any live node is unlabelled) and be the only target of ``backend="resource"``.

    >>> choose_label([{"resources": {"node0": 1000.0}, "labels": {"placement.node": "node0"}},
    ...               {"resources": {"node2": 1000.0}, "labels": {}}])
    ('node1', 1000)
    >>> choose_label([{"resources": {"CPU": 4.0}, "labels": {}}])
    (None, 0)
    """
    pattern = label_pattern(prefix)
    taken: set[str] = set()
    amounts: list[float] = []
    for node in nodes:
        for name, amount in (node.get("resources") or {}).items():
            if pattern.match(name):
                taken.add(name)
                amounts.append(float(amount))
        value = (node.get("labels") or {}).get(LABEL_KEY)
        if isinstance(value, str) and pattern.match(value):
            taken.add(value)
    if mode == LABEL_NONE or not taken:
        return None, 0
    index = next(i for i in range(len(taken) + 1) if f"{prefix}{i}" not in taken)
    amount = int(max(amounts)) if amounts else lc.DEFAULT_LABEL_AMOUNT
    return f"{prefix}{index}", amount


def label_holders(nodes: Iterable[Mapping[str, Any]], label: str) -> list[str]:
    """Ids of the nodes holding ``label``, as resource or ``placement.node`` label."""
    return [str(n.get("id")) for n in nodes
            if label in (n.get("resources") or {})
            or (n.get("labels") or {}).get(LABEL_KEY) == label]


def ray_start_args(spec: JoinSpec, label: str | None, amount: int) -> list[str]:
    """``ray start`` for the joining node: resources and labels in the form local_cluster gives
    its labelled nodes. No token here: it goes through the environment."""
    args = [lc.ray_executable(), "start", "--address", parse_head(spec.head),
            "--temp-dir", str(Path(spec.state_dir) / lc.RAY_TEMP_SUBDIR),
            "--disable-usage-stats"]
    if spec.node_ip_address:
        args += ["--node-ip-address", spec.node_ip_address]
    if spec.cpus is not None:
        args += ["--num-cpus", str(spec.cpus)]
    if spec.object_store_mb is not None:
        args += ["--object-store-memory", str(spec.object_store_mb * 2**20)]
    resources = dict(spec.resources)
    labels = dict(spec.labels)
    if label is not None:
        resources[label] = amount
        labels[LABEL_KEY] = label
    if resources:
        args += ["--resources", json.dumps(resources)]
    if labels:
        args += ["--labels", ",".join(f"{key}={value}" for key, value in labels.items())]
    return args


def _own_node_id(state_dir: Path) -> str:
    """The id of the node whose raylet runs in ``state_dir`` (Ray passes it ``--node_id``)."""
    for proc in lc.cluster_processes(state_dir):
        try:
            cmdline: list[str] = proc.cmdline()
        except psutil.NoSuchProcess:  # it ended meanwhile
            continue
        if cmdline and Path(cmdline[0]).name == "raylet":
            for arg in cmdline:
                if arg.startswith("--node_id="):
                    return arg.split("=", 1)[1]
    raise LocalClusterError(f"`ray start` succeeded but no raylet runs in {state_dir}: read "
                            f"{state_dir / lc.RAY_TEMP_SUBDIR}/session_latest/logs/raylet.err")


def _prepare_state_dir(state_dir: Path) -> tuple[str, ...]:
    """Refuse a directory in use or holding files join did not write; return what join may
    create there (and so stop may delete). Called with the directory locked."""
    fix = "use another --state-dir (an empty or new directory)"
    running = lc.cluster_processes(state_dir)
    if running:
        raise LocalClusterError(
            f"a node or cluster already runs in {state_dir} ({len(running)} processes): stop it "
            f"with placement cluster stop --state-dir {state_dir}, or {fix}")
    previous = lc.recorded_cluster(state_dir, fix=fix)
    owned = previous.created if previous is not None else ()
    for name in lc.REMOVABLE:
        if lc.present(state_dir / name) and name not in owned:
            raise LocalClusterError(f"{state_dir / name} exists and placement did not write it; "
                                    f"nothing was changed: {fix}, or move it away")
    return lc.REMOVABLE


def _copy_token(source: Path, target: Path) -> None:
    # A copy the node owns: the state directory then works like a local cluster's
    # (placement status --state-dir), and stop deletes the copy, never the user's file.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(source.read_text().strip())
    os.chmod(target, 0o600)


def join_cluster(spec: JoinSpec, say: Callable[[str], None] = lambda _: None) -> JoinedNode:
    """Start a node on this host that joins the cluster at ``spec.head``; wait until it is alive.

    Refuses bad input, a token the head refuses and a state directory in use before anything
    starts. Ends the node again and raises when it does not come up, or when another node took
    the same label at the same time on every one of JOIN_ATTEMPTS tries."""
    spec.validate()
    state_dir = Path(spec.state_dir)
    head = parse_head(spec.head)
    env = {**lc.ray_env(Path(spec.token_file)), "RAY_ADDRESS": head}
    say(f"reading the cluster at {head}")
    try:
        nodes = lc.probe_nodes(env, 1, min(spec.timeout, 60.0))
    except LocalClusterError as exc:
        raise LocalClusterError(
            f"cannot read the cluster at {head}: {exc}. Check the address, that the head runs, "
            f"that {spec.token_file} holds its token, and that the firewall lets this host "
            "reach the head's port") from None
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    deadline = time.monotonic() + spec.timeout
    with lc.locked(state_dir):
        created = _prepare_state_dir(state_dir)
        token = state_dir / lc.TOKEN_FILE
        state = lc.ClusterState(
            state_dir=state_dir, address=head, nodes=(), token_path=token,
            started_at=time.time(), start_seconds=0.0, created=created,
            spec={"joined": head, "labels": dict(spec.labels), "label_mode": spec.label,
                  "label_prefix": spec.label_prefix, "token_file": str(spec.token_file)})
        lc.write_state(state)  # before anything is created: stop cleans up a failed join too
        _copy_token(Path(spec.token_file), token)
        env = {**lc.ray_env(token), "RAY_ADDRESS": head}
        (state_dir / lc.LOG_SUBDIR).mkdir(exist_ok=True)
        began = time.monotonic()
        for attempt in range(1, JOIN_ATTEMPTS + 1):
            label, amount = choose_label(nodes, spec.label_prefix, spec.label)
            node = _start_node(spec, label, amount, env, deadline, say)
            holders = [n for n in label_holders(node["alive"], label) if n != node["id"]] \
                if label else []
            if not holders:
                break
            lc.end_processes(lc.cluster_processes(state_dir))
            say(f"another node ({holders[0][:12]}) took {label} at the same time; this node "
                f"was stopped" + ("" if attempt == JOIN_ATTEMPTS else ", trying the next label"))
            if attempt == JOIN_ATTEMPTS:
                raise LocalClusterError(
                    f"other hosts took the label this node chose on {JOIN_ATTEMPTS} tries: join "
                    "again when they are done, one host at a time")
            time.sleep(random.uniform(0.5, 3.0))  # apart from the host it raced
            nodes = lc.probe_nodes(env, 1, max(5.0, deadline - time.monotonic()))
        mine = next(n for n in node["alive"] if n["id"] == node["id"])
        address = str(mine.get("address"))
        state = lc.ClusterState(
            state_dir=state_dir, address=head,
            nodes=({"label": label or "", "address": address, "node_id": node["id"]},),
            token_path=token, started_at=time.time(),
            start_seconds=round(time.monotonic() - began, 2), created=created,
            spec={**state.spec, "label": label, "amount": amount})
        lc.write_state(state)
        labels = {k: str(v) for k, v in (mine.get("labels") or {}).items()}
        return JoinedNode(state, node["id"], address, label, labels)


def _start_node(spec: JoinSpec, label: str | None, amount: int, env: dict[str, str],
                deadline: float, say: Callable[[str], None]) -> dict[str, Any]:
    """Run ``ray start`` and wait until the node is alive; returns its id and the alive nodes.
    Ends whatever it started when it fails."""
    state_dir = Path(spec.state_dir)
    log_path = state_dir / lc.LOG_SUBDIR / f"join-{label or 'node'}.log"
    say(f"starting a node{' labelled ' + label if label else ' (no node<i> label)'} "
        f"that joins {parse_head(spec.head)}")
    try:
        proc = lc.run_ray_start(ray_start_args(spec, label, amount), env, log_path)
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            raise LocalClusterError(f"`ray start` did not finish in time: read {log_path}") \
                from None
        if code != 0:
            tail = log_path.read_text().strip().splitlines()[-3:]
            raise LocalClusterError(f"`ray start` failed (exit {code}): read {log_path}; it ends "
                                    "with: " + " | ".join(tail))
        node_id = _own_node_id(state_dir)
        alive = lc.probe_nodes(env, 1, max(5.0, deadline - time.monotonic()), node_id=node_id)
    except BaseException:
        lc.end_processes(lc.cluster_processes(state_dir))
        raise
    return {"id": node_id, "alive": alive}
