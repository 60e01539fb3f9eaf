"""Writer/reader co-location: a reader must run where its writer wrote a node-local file.

All local nodes share one disk, so each node's "local disk" is a directory named after its node
id: a reader on another node finds nothing, as it would on separate hosts.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import ray
from _support import connect, here, show, verdict

from placement import Affinity


@ray.remote(num_cpus=0)
def write(root: str, text: str) -> str:
    local_disk = Path(root) / here()
    local_disk.mkdir(parents=True, exist_ok=True)
    (local_disk / "data.txt").write_text(text)
    return here()


@ray.remote(num_cpus=0)
def read(root: str) -> tuple[str, str | None]:
    path = Path(root) / here() / "data.txt"
    return here(), path.read_text() if path.exists() else None


def main() -> int:
    names = connect()
    root = tempfile.mkdtemp(prefix="writer-reader-")
    try:
        together = Affinity()  # no node named: the writer's node is chosen, the reader follows
        wrote = ray.get(together.place(write).remote(root, "hello"))
        read_on, text = ray.get(together.place(read).remote(root))
        rows = [["with Affinity()", names[wrote], names[read_on], text or "FILE NOT FOUND"]]
        misses = 0
        for _ in range(len(names)):  # the same pair without affinity, spread by Ray
            apart = ray.get(read.options(scheduling_strategy="SPREAD").remote(root))
            misses += apart[1] is None
            rows.append(["without (SPREAD)", names[wrote], names[apart[0]],
                         apart[1] or "FILE NOT FOUND"])
        show("writer and reader", rows, ["placement", "writer node", "reader node", "reader saw"])
        print(f"\nwithout affinity the reader missed the file {misses} of {len(names)} times")
        return verdict(read_on == wrote and text == "hello",
                       "the reader ran on the writer's node and read its file")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
