"""``python -m placement.probe EXPECT TIMEOUT [NODE_ID]``: wait until EXPECT nodes of the cluster
at ``$RAY_ADDRESS`` are alive (and, given NODE_ID, that node among them) and print their records
as JSON: id, address, resources and Ray labels (exit 1 with the reason on timeout).

Runs as its own process because Ray caches the auth token per process: a driver that talked to
one cluster cannot check another.
"""
from __future__ import annotations

import json
import logging
import sys
import time


def main(argv: list[str]) -> int:
    expect, timeout = int(argv[0]), float(argv[1])
    node_id = argv[2] if len(argv) > 2 else None
    import ray

    deadline = time.monotonic() + timeout
    ray.init(log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    try:
        while True:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            if len(alive) >= expect and (node_id is None
                                         or any(n["NodeID"] == node_id for n in alive)):
                records = [{"id": n["NodeID"], "address": n["NodeManagerAddress"],
                            "resources": n.get("Resources") or {},
                            "labels": n.get("Labels") or {}} for n in alive]
                print(json.dumps(records))
                return 0
            if time.monotonic() > deadline:
                waited = f"node {node_id} is not alive" if node_id else \
                    f"only {len(alive)} of {expect} nodes alive"
                print(
                    f"{waited} after {timeout:.0f}s: read the "
                    "raylet logs under <state-dir>/ray/session_latest/logs/",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.2)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
