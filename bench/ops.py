#!/usr/bin/env python3
"""Benchmarks lowbit's operators against PyTorch's own, side by side in one process.

Prints one JSON line per case: {"case", "n", "memory", "ours_ms", "theirs_ms", "speedup"} where
speedup = theirs_ms / ours_ms (for "vs_copy", the fraction of copy throughput we reach).

  PYTHONPATH=python /usr/bin/python3 bench/ops.py             # both memory modes, one process each
  PYTHONPATH=python /usr/bin/python3 bench/ops.py --memory fresh
  PYTHONPATH=python python3 bench/ops.py --device cuda      # 2^28 float32 elements on the GPU

memory "fresh": glibc malloc, so large outputs come back as fresh pages (page faults count);
memory "retained": jemalloc (LD_PRELOAD) with MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true,
so freed pages are reused; the copy baseline always writes into a preallocated tensor.
On --device cuda, memory is "caching" (torch's CUDA caching allocator reuses freed blocks, so there
are no fresh pages to count) and every timing ends with torch.cuda.synchronize().
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
RETAIN = "dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true"


def _no_sync():
    pass


SYNC = [_no_sync]  # torch.cuda.synchronize on --device cuda: kernels are asynchronous


def timeit(fn, repeat, inner):
    """Median over `repeat` samples of the mean time of `inner` calls, in milliseconds."""
    fn()
    SYNC[0]()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        SYNC[0]()
        samples.append((time.perf_counter() - t0) / inner * 1e3)
    return statistics.median(samples)


def pair(case, n, memory, ours, theirs, repeat):
    inner = max(1, (1 << 22) // n) if memory != "caching" else 5
    # Interleave the two so that machine noise hits both alike.
    a, b = [], []
    for _ in range(repeat):
        a.append(timeit(ours, 1, inner))
        b.append(timeit(theirs, 1, inner))
    o, t = statistics.median(a), statistics.median(b)
    print(json.dumps({"case": case, "n": n, "memory": memory, "ours_ms": round(o, 4),
                      "theirs_ms": round(t, 4), "speedup": round(t / o, 2)}), flush=True)


def run(memory, sizes, repeat, device="cpu"):
    import torch
    import lowbit

    torch.manual_seed(0)
    if device == "cuda":
        SYNC[0] = torch.cuda.synchronize
        # Every tensor below is made on the GPU (set_default_device needs torch >= 2.0).
        torch.set_default_tensor_type(torch.cuda.FloatTensor)
    for n in sizes:
        x = torch.randn(n) * 4
        g = torch.randn(n)
        lo, hi = torch.tensor(-6.0), torch.tensor(6.0)
        # Same nudged range for torch: scale and zero point of [-6, 6] at 8 bits.
        scale, zp = 12.0 / 255.0, 128
        depth = 256
        xc = x.view(-1, depth)
        gc = g.view(-1, depth)
        cmin = torch.full((depth,), -6.0)
        cmax = torch.full((depth,), 6.0)
        # torch's per-channel op takes the channel axis; ours uses the last dimension.
        t_scale = torch.full((depth,), scale)
        t_zp = torch.full((depth,), zp, dtype=torch.int32)
        out = torch.empty_like(x)

        pair("fake_quant_vars_fwd", n, memory,
             lambda: lowbit.fake_quant_with_min_max_vars(x, lo, hi),
             lambda: torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, 255), repeat)
        pair("fake_quant_vars_fwd_vs_copy", n, memory,
             lambda: lowbit.fake_quant_with_min_max_vars(x, lo, hi),
             lambda: out.copy_(x), repeat)
        pair("fake_quant_per_channel_fwd", n, memory,
             lambda: lowbit.fake_quant_with_min_max_vars_per_channel(xc, cmin, cmax),
             lambda: torch.fake_quantize_per_channel_affine(xc, t_scale, t_zp, 1, 0, 255), repeat)

        xg = x.clone().requires_grad_()
        xcg = xc.clone().requires_grad_()

        def ours_fb():
            y = lowbit.fake_quant_with_min_max_vars(xg, lo, hi)
            return torch.autograd.grad(y, xg, g)

        def theirs_fb():
            y = torch.fake_quantize_per_tensor_affine(xg, scale, zp, 0, 255)
            return torch.autograd.grad(y, xg, g)

        def ours_pc_fb():
            y = lowbit.fake_quant_with_min_max_vars_per_channel(xcg, cmin, cmax)
            return torch.autograd.grad(y, xcg, gc)

        def theirs_pc_fb():
            y = torch.fake_quantize_per_channel_affine(xcg, t_scale, t_zp, 1, 0, 255)
            return torch.autograd.grad(y, xcg, gc)

        def ours_sign_fb():
            y = lowbit.ste_sign(xg)
            return torch.autograd.grad(y, xg, g)

        def torch_sign_fb():
            # The usual composed STE: forward sign, backward the clipped identity (detach trick).
            clipped = torch.clamp(xg, -1.0, 1.0)
            sign = torch.where(xg >= 0, torch.ones_like(xg), -torch.ones_like(xg))
            y = clipped + (sign - clipped).detach()
            return torch.autograd.grad(y, xg, g)

        pair("fake_quant_vars_fwd_bwd", n, memory, ours_fb, theirs_fb, repeat)
        pair("fake_quant_per_channel_fwd_bwd", n, memory, ours_pc_fb, theirs_pc_fb, repeat)
        pair("ste_sign_fwd_bwd_vs_torch_ops", n, memory, ours_sign_fb, torch_sign_fb, repeat)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory", choices=["fresh", "retained", "both"], default="both")
    ap.add_argument("--sizes", default=None,
                    help="comma-separated log2 sizes (default 20,24 on the CPU, 28 on CUDA)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    args.sizes = args.sizes or ("28" if args.device == "cuda" else "20,24")
    sizes = [1 << int(s) for s in args.sizes.split(",")]
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            sys.exit("bench/ops.py: --device cuda: torch sees no CUDA device here")
        run("caching", sizes, args.repeat, "cuda")
        return
    if args.memory == "both":
        for mode in ("fresh", "retained"):
            subprocess.run([sys.executable, __file__, "--memory", mode, "--sizes", args.sizes,
                            "--repeat", str(args.repeat)], check=True)
        return
    if args.memory == "retained" and os.environ.get("MALLOC_CONF") != RETAIN:
        if not os.path.exists(JEMALLOC):
            sys.exit(f"bench/ops.py: {JEMALLOC} is missing (./scripts/setup installs libjemalloc2)")
        env = dict(os.environ, LD_PRELOAD=JEMALLOC, MALLOC_CONF=RETAIN)
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    run(args.memory, sizes, args.repeat)


if __name__ == "__main__":
    main()
