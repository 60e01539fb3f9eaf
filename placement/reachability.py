"""Outlier ejection: a node whose raylet stops answering is left out of the candidates within
seconds, for a back-off, then tried again (Envoy's outlier detection, Finagle's failure accrual).

Ray marks a node dead only when its health checks have failed for a while (tens of seconds for a
host cut off; docs/explanation/faults.rst), and until then it keeps sending work there. Here each
probe round opens a TCP connection to the raylet port of each node recent placements went to, all
at once, and closes it: a node that fails ``FAILURES`` rounds in a row is ejected for
``BACK_OFF_SECONDS``, doubled at each ejection that follows (at most ``MAX_BACK_OFF_SECONDS``).
The snapshot reader then reads an ejected node as not alive, so every policy leaves it by the
snapshot's difference. After the back-off it is probed again and comes back when it answers. A
busy node answers (its raylet accepts connections whatever its CPUs do): it is never ejected.

This module keeps the table and probes; it reads no cluster (``placement.ejection`` runs the
rounds).

>>> table = Reachability(clock=iter([0.0, 1.0, 2.0, 40.0]).__next__)
>>> table.observe({"n1": False}), table.observe({"n1": False})
(False, True)
>>> sorted(table.ejected()), table.observe({"n1": True}), sorted(table.ejected())
(['n1'], False, ['n1'])
>>> table.observe({"n1": True}), table.ejected()
(True, {})
"""
from __future__ import annotations

import errno
import ipaddress
import math
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, TypeVar

_V = TypeVar("_V")

FAILURES = 2  # rounds in a row: one lost SYN on a loaded link is not a cut host
BACK_OFF_SECONDS = 10.0
MAX_BACK_OFF_SECONDS = 300.0
# Nodes probed per round, the most recently placed on first, and nodes remembered (failures,
# ejections): both bounded, whatever the size of the cluster.
PROBE_NODES = 256
REMEMBERED = 1024


class Ejection(NamedTuple):
    """A node left out: why, since when (wall clock), until when (the table's clock), how many
    times in a row it was ejected."""

    node_id: str
    why: str
    since: float
    until: float
    times: int


class Reachability:
    """Consecutive probe failures per node and the nodes ejected; thread-safe, bounded
    (``REMEMBERED`` nodes of each)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 back_off: float = BACK_OFF_SECONDS) -> None:
        if not (isinstance(back_off, (int, float)) and 0 < back_off < math.inf):
            raise ValueError(f"back_off must be a number of seconds > 0, got {back_off!r:.40}")
        self._clock = clock
        self.back_off = float(back_off)
        self._lock = threading.Lock()
        self._failed: OrderedDict[str, int] = OrderedDict()
        self._ejected: OrderedDict[str, Ejection] = OrderedDict()
        # Ejections in a row per node, and until when it must answer to be forgiven them (a
        # node that flaps keeps doubling its back-off).
        self._times: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def observe(self, answered: Mapping[str, bool], why: str = "") -> bool:
        """Take one round's results (node id -> answered); True when the set of ejected nodes
        changed (the snapshot must be read again). A node is ejected after ``FAILURES`` failed
        rounds in a row, and again, for twice as long, when it fails as many once its back-off
        is over; it comes back at the first answer after its back-off."""
        now = self._clock()
        changed = False
        with self._lock:
            for node_id, ok in answered.items():
                ejection = self._ejected.get(node_id)
                if ok:
                    self._failed.pop(node_id, None)
                    if ejection is not None and now >= ejection.until:
                        del self._ejected[node_id]
                        times = self._times.get(node_id)
                        if times is not None:
                            _put(self._times, node_id, (times[0], now + self._span(times[0])))
                        changed = True
                    elif ejection is None:
                        times = self._times.get(node_id)
                        if times is not None and now >= times[1]:
                            del self._times[node_id]
                    continue
                count = self._failed.get(node_id, 0) + 1
                _put(self._failed, node_id, count)
                if count < FAILURES:
                    continue
                if ejection is None:
                    self._eject(node_id, why, now)
                    changed = True
                elif now >= ejection.until:  # tried again after its back-off: still gone
                    self._eject(node_id, why, now)
        return changed

    def _span(self, times: int) -> float:
        return min(self.back_off * 2.0 ** min(times - 1, 64), MAX_BACK_OFF_SECONDS)

    def _eject(self, node_id: str, why: str, now: float) -> None:
        self._failed.pop(node_id, None)
        times = self._times.get(node_id, (0, 0.0))[0] + 1
        until = now + self._span(times)
        _put(self._times, node_id, (times, until))
        _put(self._ejected, node_id, Ejection(
            node_id, why or f"its raylet did not answer {FAILURES} probes in a row",
            time.time(), until, times))

    def keep_only(self, listed: Iterable[str]) -> None:
        """Drop the ejections of nodes not in ``listed`` (the ejected nodes Ray still lists
        alive): a node Ray marked dead or forgot needs no probe, and must not hold one of the
        round's places."""
        keep = set(listed)
        with self._lock:
            for node_id in [n for n in self._ejected if n not in keep]:
                del self._ejected[node_id]
                self._failed.pop(node_id, None)
                self._times.pop(node_id, None)

    def now(self) -> float:
        """The table's clock (``Ejection.until`` is on it)."""
        return self._clock()

    def ejected(self) -> dict[str, Ejection]:
        """The nodes left out now (a copy)."""
        with self._lock:
            return dict(self._ejected)

    def forget(self) -> None:
        """Drop everything (a new connection may be another cluster)."""
        with self._lock:
            self._failed.clear()
            self._ejected.clear()
            self._times.clear()


def _put(table: OrderedDict[str, _V], key: str, value: _V) -> None:
    table[key] = value
    table.move_to_end(key)
    if len(table) > REMEMBERED:
        table.popitem(last=False)


def tcp_probe(targets: Sequence[tuple[str, int]], timeout: float) -> list[bool]:
    """Whether each (address, port) accepts a TCP connection within ``timeout`` seconds; all at
    once (non-blocking connects on one selector), so a round lasts at most ``timeout``. An
    address that is not a numeric IPv4 or IPv6 one (no name is looked up), a port outside
    1-65535, or a connection that cannot be opened (no file descriptor left) reads as False."""
    answered = [False] * len(targets)
    selector = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    try:
        for i, (address, port) in enumerate(targets):
            sock = _connecting(address, port)
            if sock is None:
                continue
            socks.append(sock)
            try:
                code = sock.connect_ex((address, port))
            except OSError:
                continue
            if code == 0:
                answered[i] = True
            elif code in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                selector.register(sock, selectors.EVENT_WRITE, i)
        deadline = time.monotonic() + timeout
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                ready: socket.socket = key.fileobj  # type: ignore[assignment]
                answered[key.data] = ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                selector.unregister(ready)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    return answered


def _connecting(address: object, port: object) -> socket.socket | None:
    """A non-blocking socket of the address's family, or None when it cannot be probed."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(str(address)).version == 6 \
            else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (ValueError, OSError):  # not a numeric address; no descriptor left
        return None
    sock.setblocking(False)
    return sock


REACHABILITY = Reachability()  # the process's table: the snapshot reader leaves its nodes out
