"""A Ray cluster over separate hosts (tests/netns.py), started as the README's "Several machines"
says: the head with plain ``ray start`` and token auth on host 0, the others with ``placement
cluster join``. Each node keeps its files under its own state directory."""
from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from .netns import SeparateHosts

GCS_PORT = 6379
CPUS = 2
OBJECT_STORE_MB = 100
JOIN_TIMEOUT_SECONDS = 120


def zone_of(i: int) -> str:
    return f"z{1 + i % 2}"


@dataclass
class HostsCluster:
    hosts: SeparateHosts
    root: Path
    token: Path

    @property
    def head(self) -> str:
        return f"{self.hosts.addresses[0]}:{GCS_PORT}"

    def env(self, **extra: str) -> dict[str, str]:
        """A driver's environment on a host: the cluster's address and token, nothing of ours."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RAY_") and k != "PLACEMENT_STATE_DIR"}
        env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                   RAY_USAGE_STATS_ENABLED="0", RAY_ADDRESS=self.head, RAY_AUTH_MODE="token",
                   RAY_AUTH_TOKEN_PATH=str(self.token), HOME=str(self.root))
        env.update(extra)
        return env

    def join(self, i: int, state_dir: Path | None = None) -> str:
        """Join host ``i`` with ``placement cluster join`` (its files in ``state_dir``, by
        default ``<root>/h<i>``); its output (raises on failure)."""
        done = self.hosts.run(i, [
            str(Path(sys.executable).parent / "placement"), "cluster", "join", self.head,
            "--token-file", str(self.token), "--labels", f"zone={zone_of(i)}",
            "--state-dir", str(state_dir or self.root / f"h{i}"), "--cpus", str(CPUS),
            "--object-store-mb", str(OBJECT_STORE_MB)],
            env={k: v for k, v in self.env().items() if not k.startswith("RAY_")},
            timeout=JOIN_TIMEOUT_SECONDS + 30)
        if done.returncode:
            raise RuntimeError(f"join of host {i} failed: {done.stdout[-2000:]}"
                               f"{done.stderr[-2000:]}")
        return done.stdout

    def describe(self) -> str:
        """What a driver on host 0 needs to find the cluster again (``attach``)."""
        return json.dumps({"prefix": self.hosts.prefix, "count": len(self.hosts.names),
                           "token": str(self.token), "root": str(self.root)})


def attach(description: str) -> HostsCluster:
    """The cluster ``describe()`` described, made by another process (nothing is made here)."""
    seen = json.loads(description)
    return HostsCluster(SeparateHosts(seen["count"], prefix=seen["prefix"], make=False),
                        Path(seen["root"]), Path(seen["token"]))


def start(hosts: SeparateHosts, root: Path, joined: int) -> HostsCluster:
    """The head on host 0 and hosts 1..joined-1 joined; the rest stay free for later joins."""
    root.mkdir(parents=True, exist_ok=True)
    token = root / "token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    cluster = HostsCluster(hosts, root, token)
    head = hosts.run(0, [
        str(Path(sys.executable).parent / "ray"), "start", "--head",
        "--node-ip-address", hosts.addresses[0], "--port", str(GCS_PORT),
        "--include-dashboard", "false", "--resources", '{"node0": 1000}',
        "--labels", f"placement.node=node0,zone={zone_of(0)}",
        "--temp-dir", str(root / "h0"), "--num-cpus", str(CPUS),
        "--object-store-memory", str(OBJECT_STORE_MB * 2**20), "--disable-usage-stats"],
        env=cluster.env(), timeout=120)
    if head.returncode:
        raise RuntimeError(f"ray start --head failed: {head.stdout[-2000:]}{head.stderr[-2000:]}")
    for i in range(1, joined):
        cluster.join(i)
    return cluster
