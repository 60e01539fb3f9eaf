"""An actor next to its caller: a function that calls an actor runs on the actor's node."""
from __future__ import annotations

import sys

import ray
from _support import connect, here, show, verdict

from placement import Affinity, RoundRobin


@ray.remote(num_cpus=0)
class Cache:
    def __init__(self) -> None:
        self.data = {i: i * i for i in range(1000)}

    def get(self, key: int) -> tuple[str, int]:
        return here(), self.data[key]


@ray.remote(num_cpus=0)
def caller(cache, keys: list[int]) -> tuple[str, str, int]:
    results = ray.get([cache.get.remote(k) for k in keys])
    return here(), results[0][0], sum(v for _, v in results)


def main() -> int:
    names = connect()
    spread = RoundRobin()
    caches = [spread.place(Cache).remote() for _ in range(2)]
    try:
        rows, ok = [], True
        for cache in caches:
            call = Affinity(cache).place(caller).remote(cache, list(range(100)))
            ran_on, cache_on, total = ray.get(call)
            ok &= ran_on == cache_on and total == sum(i * i for i in range(100))
            rows.append([names[cache_on], names[ran_on], total])
        show("callers placed with Affinity(actor)", rows, ["actor node", "caller node", "sum"])
        return verdict(ok, "every caller ran on its actor's node")
    finally:
        for cache in caches:
            ray.kill(cache)


if __name__ == "__main__":
    sys.exit(main())
