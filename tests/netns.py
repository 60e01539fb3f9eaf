"""Separate hosts on one machine: network namespaces, each with its own network stack and one
private address, joined by a bridge that lives in a namespace of its own. Every address exists
only inside namespaces made here (none in the machine's own stack), so nothing reaches or leaves
the machine. Needs root and ``ip netns``; ``available()`` says why not.

>>> hosts = SeparateHosts(3)                                # doctest: +SKIP
>>> hosts.run(0, ["hostname", "-I"]).stdout                  # doctest: +SKIP
'10.213.0.1 \\n'
>>> hosts.cut(2); hosts.heal(2); hosts.close()               # doctest: +SKIP
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

SUBNET = "10.213.0"  # private (RFC 1918); the addresses live only inside these namespaces
END_WAIT_SECONDS = 10.0


def available() -> str | None:
    """None when namespaces can be made here, else why not (the tests skip, saying so)."""
    if os.geteuid() != 0:
        return "separate hosts need root (network namespaces): CI runs as root"
    if shutil.which("ip") is None:
        return "separate hosts need the `ip` command (iproute2)"
    probe = f"plprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


class SeparateHosts:
    """``count`` hosts: namespace ``<prefix>h<i>`` with address ``10.213.0.<i+1>`` on ``eth0``,
    its peer ``h<i>`` on the bridge of namespace ``<prefix>sw``. ``cut(i)`` takes that peer down
    (the host's link is cut: its packets go nowhere, as a pulled cable); ``heal(i)`` brings it
    back; ``kill(i)`` ends every process in the host; ``close()`` ends every process in every
    namespace made here, by the pids each namespace holds, then removes the namespaces."""

    def __init__(self, count: int, *, prefix: str | None = None, make: bool = True) -> None:
        self.prefix = prefix or f"pl{os.getpid() % 100000}"
        self.switch = f"{self.prefix}sw"
        self.names = [f"{self.prefix}h{i}" for i in range(count)]
        self.addresses = [f"{SUBNET}.{i + 1}" for i in range(count)]
        self._made: list[str] = []
        if not make:  # hosts another process made (a driver cutting links): close() ends nothing
            return
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def _make(self) -> None:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, name in enumerate(self.names):
            _ip("netns", "add", name)
            self._made.append(name)
            # Both ends are made inside their namespaces: no interface in the machine's stack.
            _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", f"h{i}",
                "netns", self.switch)
            _ip("-n", self.switch, "link", "set", f"h{i}", "master", "br0")
            _ip("-n", self.switch, "link", "set", f"h{i}", "up")
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("-n", name, "addr", "add", f"{self.addresses[i]}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")

    # -- running things on a host ------------------------------------------------------------------

    def command(self, i: int, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.names[i], *argv]

    def run(self, i: int, argv: Sequence[str], *, env: dict[str, str] | None = None,
            timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on host ``i`` and wait for it (at most ``timeout`` seconds)."""
        return subprocess.run(self.command(i, argv), capture_output=True, text=True, env=env,
                              timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)

    def pids(self, i: int) -> list[int]:
        return self._pids(self.names[i])

    @staticmethod
    def _pids(name: str) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              timeout=30)
        return [int(p) for p in done.stdout.split()]

    # -- faults -----------------------------------------------------------------------------------

    def cut(self, i: int) -> None:
        _ip("-n", self.switch, "link", "set", f"h{i}", "down")

    def heal(self, i: int) -> None:
        _ip("-n", self.switch, "link", "set", f"h{i}", "up")

    def kill(self, i: int) -> list[int]:
        """End every process of host ``i`` (SIGKILL, as a host that loses power); their pids."""
        return _end(self.pids(i), signal.SIGKILL)

    # -- cleaning up ------------------------------------------------------------------------------

    def close(self) -> list[str]:
        """End the processes of every namespace made here, then remove the namespaces; what was
        still running (names of the processes ended by force)."""
        left: list[str] = []
        for name in reversed(self._made):
            pids = self._pids(name)
            left += [_name_of(p) for p in pids]
            _end(pids, signal.SIGTERM)
            _end(self._pids(name), signal.SIGKILL)
        for name in reversed(self._made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self._made.clear()
        return left


def _name_of(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return str(pid)


def _end(pids: list[int], how: signal.Signals) -> list[int]:
    """Send ``how`` to ``pids`` and wait (bounded) until they are gone."""
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(how)
            procs.append(proc)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=END_WAIT_SECONDS)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue
    deadline = time.monotonic() + END_WAIT_SECONDS
    while alive and time.monotonic() < deadline:
        _, alive = psutil.wait_procs(alive, timeout=1)
    return [p.pid for p in procs]
