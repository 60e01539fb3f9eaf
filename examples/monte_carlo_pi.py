"""Estimating pi with sampling tasks placed round robin."""
from __future__ import annotations

import math
import random
import sys
from collections import Counter

import ray
from _support import connect, here, show, verdict

from placement import RoundRobin

TASKS = 16
SAMPLES = 200_000


@ray.remote(num_cpus=1)
def sample(seed: int) -> tuple[str, int]:
    rng = random.Random(seed)
    inside = sum(1 for _ in range(SAMPLES) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
    return here(), inside


def main() -> int:
    names = connect()
    sampler = RoundRobin().place(sample)
    results = ray.get([sampler.remote(seed) for seed in range(TASKS)])
    estimate = 4 * sum(inside for _, inside in results) / (TASKS * SAMPLES)
    per_node = Counter(node for node, _ in results)
    by_name = sorted(per_node.items(), key=lambda x: names[x[0]])
    show("sampling tasks per node", [[names[n], c] for n, c in by_name], ["node", "tasks"])
    print(f"\npi ~ {estimate:.5f} (error {abs(estimate - math.pi):.5f}) "
          f"from {TASKS * SAMPLES:,} samples")
    counts = [per_node.get(n, 0) for n in names]
    return verdict(abs(estimate - math.pi) < 0.01 and max(counts) - min(counts) <= 1,
                   "pi within 0.01, sampling tasks balanced over the nodes")


if __name__ == "__main__":
    sys.exit(main())
