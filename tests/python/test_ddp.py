"""lowbit.nn layers under DistributedDataParallel (gloo, two processes on this machine): the ranks
stay identical, and equal one process training on the whole batch."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lowbit.nn as qnn

STEPS = 6
WORLD = 2


def make_model():
    # No batch norm: with it each rank normalises by its own half-batch and the ranks would match
    # each other but not the single-process run.
    torch.manual_seed(0)
    return torch.nn.Sequential(
        qnn.QuantConv2d(1, 4, 3, padding=1, kernel_quantizer="ste_sign",
                        kernel_constraint="weight_clip"),
        torch.nn.Flatten(),
        qnn.QuantLinear(4 * 6 * 6, 8, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                        kernel_constraint="weight_clip"),
        qnn.QuantLinear(8, 3, input_quantizer="dorefa(k_bit=2)",
                        kernel_quantizer="dorefa(k_bit=2, mode=weights)"))


def batches():
    g = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        yield torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


def train_step(model, opt, x, y):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    qnn.apply_constraints(model)


def worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        model = torch.nn.parallel.DistributedDataParallel(make_model())
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for x, y in batches():
            half = x.shape[0] // WORLD  # each rank takes its half of the batch
            train_step(model, opt, x[rank * half:(rank + 1) * half],
                       y[rank * half:(rank + 1) * half])
        torch.save({k: v.detach().clone() for k, v in model.module.state_dict().items()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_ranks_stay_identical_and_match_one_process(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{k} differs between the ranks"

    # One process on the whole batch: DDP averages the two half-batch gradients, which is the
    # gradient of the mean loss over the whole batch.
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for x, y in batches():
        train_step(model, opt, x, y)
    start = make_model().state_dict()
    for k, v in model.state_dict().items():
        assert torch.allclose(r0[k], v, atol=1e-5), f"{k}: DDP and one process differ"
        assert not torch.equal(v, start[k]), f"{k} did not train"
