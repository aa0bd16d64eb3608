#!/usr/bin/env python3
"""PyTorch DistributedDataParallel on gloo: the peer of ad_bench_mpi (bench/mpi_step.cpp).

Runs the training step of benchmark configuration c or d (bench/configs.cpp: the same layer
sizes, batch, loss and SGD learning rate) in N processes on this machine, each with one thread
and its 1/N of the batch, gradients averaged by DDP (its default 25 MB buckets, allreduce started
from autograd hooks). Prints "config ddp median_us" from rank 0, the median step time after a
warm-up round, each step started after a barrier as in ad_bench_mpi.

    python3 bench/ddp_step.py c [--ranks 2] [--steps N] [--rounds R]
"""
import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

CONFIGS = {
    # name: (layer sizes, batch, loss, SGD learning rate), as in bench/configs.cpp
    "c": ([784, 256, 256, 10], 64, "cross_entropy", 0.01),
    "d": ([1024, 1024, 1024, 1024, 1024], 256, "mse", 0.01),
}


def worker(rank, world, config, steps, rounds, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    sizes, batch, loss_name, lr = CONFIGS[config]
    torch.manual_seed(5)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    model = nn.parallel.DistributedDataParallel(nn.Sequential(*layers))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    lo = rank * batch // world
    hi = (rank + 1) * batch // world
    x = torch.randn(batch, sizes[0])[lo:hi]
    if loss_name == "mse":
        target = torch.randn(batch, sizes[-1])[lo:hi]
        loss_fn = lambda out: nn.functional.mse_loss(out, target)
    else:
        labels = torch.randint(0, sizes[-1], (batch,))[lo:hi]
        loss_fn = lambda out: nn.functional.cross_entropy(out, labels)
    times = []
    for r in range(rounds):
        for _ in range(steps):
            dist.barrier()
            t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(x)).backward()
            opt.step()
            if r > 0:
                times.append((time.perf_counter() - t0) * 1e6)
    if rank == 0:
        print(f"{config} ddp {statistics.median(times):.1f}", flush=True)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", choices=sorted(CONFIGS))
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--steps", type=int, default=0, help="steps per round (default: 300 for c, 20 for d)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--port", type=int, default=29533)
    a = p.parse_args()
    steps = a.steps or (300 if a.config == "c" else 20)
    mp.spawn(worker, args=(a.ranks, a.config, steps, a.rounds, a.port), nprocs=a.ranks, join=True)


if __name__ == "__main__":
    main()
