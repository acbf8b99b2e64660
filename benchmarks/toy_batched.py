"""Benchmark: training toy models as one batched tensor program vs one by one.

Trains the same set of instances (sparsities x restarts, 5 features in 2 dimensions) both ways for
the same number of steps and prints the wall time of each and the speed-up. Run it alone (one torch
process at a time): ``python benchmarks/toy_batched.py``.
"""

from __future__ import annotations

import argparse
import time

import torch

from emgeo import toy


def make_model(n_instances: int, seed: int) -> toy.ToyModel:
    cfg = toy.ToyConfig(n_features=5, d_hidden=2, n_instances=n_instances)
    probability = torch.logspace(0, -2, n_instances)
    importance = (0.9 ** torch.arange(5.0)).expand(n_instances, 5)
    return toy.ToyModel(cfg, probability, importance, torch.Generator().manual_seed(seed))


def time_batched(n_instances: int, steps: int, batch_size: int) -> float:
    model = make_model(n_instances, seed=0)
    start = time.perf_counter()
    toy.train(model, steps, batch_size, generator=torch.Generator().manual_seed(0), progress=False)
    return time.perf_counter() - start


def time_one_by_one(n_instances: int, steps: int, batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(n_instances):
        model = make_model(1, seed=i)
        toy.train(
            model, steps, batch_size, generator=torch.Generator().manual_seed(i), progress=False
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=21)
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    time_batched(2, 20, args.batch_size)  # warm-up
    batched = time_batched(args.instances, args.steps, args.batch_size)
    looped = time_one_by_one(args.instances, args.steps, args.batch_size)
    print(
        f"instances={args.instances} steps={args.steps} "
        f"batch={args.batch_size} threads={args.threads}"
    )
    print(f"batched:    {batched:7.2f} s")
    print(f"one by one: {looped:7.2f} s")
    print(f"speed-up:   {looped / batched:7.1f}x")


if __name__ == "__main__":
    main()
