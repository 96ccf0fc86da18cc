#!/usr/bin/env python3
"""Benchmarks every lowbit operator against what PyTorch users write instead, side by side in one
process, with a roofline: the bytes each pass must move, the GB/s reached, and the fraction of a
copy's bandwidth measured in the same run.

  PYTHONPATH=python /usr/bin/python3 bench/ops.py                  # both memory modes
  PYTHONPATH=python /usr/bin/python3 bench/ops.py --memory retained --threads 2 --out r.jsonl
  PYTHONPATH=python /usr/bin/python3 bench/ops.py --table r.jsonl  # the Markdown tables of a run
  /usr/bin/python3 bench/ops.py --roofline r.jsonl                  # the same as one table
  PYTHONPATH=python python3 bench/ops.py --device cuda             # 2^28 float32 elements on a GPU

The operators, their torch counterparts and the bytes per element: bench/ops_cases.py.
Prints one JSON line per (operator, pass, size, threads): ours and theirs, best and median over the
samples of all --runs sweeps (each sample the mean of enough calls for ~2^22 elements), speedup = theirs / ours (best
and median), and for ours at its best: GB/s = bytes / time and copy_fraction = that / the copy's
GB/s. The copy is `out.copy_(x)` into a preallocated tensor (8 bytes per element), sampled on its
own before each size and thread count and in turn with ours and theirs in each case; its best
sample over both is the baseline; copy_fraction_beside uses only the copies sampled in turn with
that case (the same moments' noise). **The targets use best-of-runs** on both sides:
noise only ever adds time, so the best sample is the closest to what the code can do; the median
is printed too.

memory "retained": jemalloc (LD_PRELOAD) with MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1,
retain:true, so freed pages are reused: the steady state of a training loop, the mode of the targets.
memory "fresh": glibc malloc, so large outputs come back as fresh pages (page faults count).
On --device cuda, memory is "caching" (torch's CUDA caching allocator) and every timing ends with
torch.cuda.synchronize().
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


def sample(fn, inner):
    """Mean time of `inner` calls, in milliseconds."""
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    SYNC[0]()
    return (time.perf_counter() - t0) / inner * 1e3


def interleaved(fns, n, repeat, caching):
    """`repeat` samples of each function, taken in turn so that machine noise hits all alike."""
    inner = 5 if caching else max(1, (1 << 22) // n)
    for fn in fns:
        fn()
    SYNC[0]()
    samples = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, samples):
            out.append(sample(fn, inner))
    return samples


def run(memory, sizes, threads, repeat, runs, only, out, device="cpu"):
    import torch
    import ops_cases

    if device == "cuda":
        SYNC[0] = torch.cuda.synchronize
        # Every tensor below is made on the GPU (set_default_device needs torch >= 2.0).
        torch.set_default_tensor_type(torch.cuda.FloatTensor)
        threads = [torch.get_num_threads()]
    cases = [c for c in ops_cases.CASES if not only or any(o in c.name for o in only)]
    caching = device == "cuda"
    # Samples of every run, by (n, threads, case, pass): the sweep runs `runs` times so that the
    # best samples come from the machine's quiet moments, whenever those are.
    samples, copies = {}, {}
    for _ in range(runs):
        for n in sizes:
            t = ops_cases.Tensors(n)
            dest = torch.empty_like(t.x)
            for k in threads:
                torch.set_num_threads(k)
                # The copy: a block of samples on its own, and one sample in turn with ours and
                # theirs in each case. The fastest of them all is the baseline (the strictest).
                (alone,) = interleaved([lambda: dest.copy_(t.x)], n, repeat, caching)
                copies.setdefault((n, k), []).extend(alone)
                for case in cases:
                    for pass_ in case.passes:
                        ours, theirs = case.make(pass_, t)
                        got = interleaved([ours, theirs, lambda: dest.copy_(t.x)], n, repeat,
                                          caching)
                        old = samples.setdefault((n, k, case, pass_), ([], [], []))
                        old[0].extend(got[0])
                        old[1].extend(got[1])
                        old[2].extend(got[2])
                        copies[(n, k)].extend(got[2])
    for (n, k, case, pass_), (a, b, beside) in samples.items():
        copy = min(copies[(n, k)])
        copy_gbps = 8 * n / (copy * 1e6)
        gbps = case.bytes[pass_] * n / (min(a) * 1e6)
        beside_gbps = 8 * n / (min(beside) * 1e6)
        line = {"case": case.name, "pass": pass_, "n": n, "threads": k, "memory": memory,
                "theirs": case.theirs, "bytes_per_element": case.bytes[pass_],
                "samples": len(a),
                "ours_best_ms": round(min(a), 4),
                "ours_median_ms": round(statistics.median(a), 4),
                "theirs_best_ms": round(min(b), 4),
                "theirs_median_ms": round(statistics.median(b), 4),
                "speedup_best": round(min(b) / min(a), 2),
                "speedup_median": round(statistics.median(b) / statistics.median(a), 2),
                "gbps_best": round(gbps, 1),
                "copy_best_ms": round(copy, 4),
                "copy_gbps_best": round(copy_gbps, 1),
                "copy_fraction_best": round(gbps / copy_gbps, 2),
                # Against the best copy sampled in turn with this case only (the same moments'
                # noise on both sides): the fairer figure on a shared machine, never below the above.
                "copy_beside_best_ms": round(min(beside), 4),
                "copy_fraction_beside": round(gbps / beside_gbps, 2)}
        text = json.dumps(line)
        print(text, flush=True)
        if out:
            out.write(text + "\n")
            out.flush()


def table(path):
    """Markdown tables of a run's JSON lines: one per memory mode, size and thread count."""
    rows = [json.loads(line) for line in open(path) if line.strip().startswith("{")]
    configs = []
    for r in rows:
        key = (r["memory"], r["n"], r["threads"])
        if key not in configs:
            configs.append(key)
    for memory, n, k in configs:
        sel = [r for r in rows if (r["memory"], r["n"], r["threads"]) == (memory, n, k)]
        print(f"\n**2^{n.bit_length() - 1} float32, {k} thread{'s' if k > 1 else ''}, {memory} "
              f"memory**\n")
        print("| operator | pass | bytes/elem | ours ms | GB/s | copy GB/s | of copy | "
              "of copy beside | torch ms | x torch (best) | x torch (median) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in sel:
            print(f"| `{r['case']}` | {r['pass'].replace('_', '+')} | {r['bytes_per_element']} | "
                  f"{r['ours_best_ms']} | {r['gbps_best']} | {r['copy_gbps_best']} | "
                  f"{r['copy_fraction_best']} | {r.get('copy_fraction_beside', '')} | "
                  f"{r['theirs_best_ms']} | {r['speedup_best']} | {r['speedup_median']} |")


def roofline(path):
    """One Markdown table of a run: a row per operator and pass, for each size and thread count
    ours at its best (ms and GB/s at the largest size, the fraction of the copy's bandwidth, and in
    square brackets that of the copy sampled beside the case) and the speedup over torch (best of
    runs, median in brackets)."""
    rows = [json.loads(line) for line in open(path) if line.strip().startswith("{")]
    configs = sorted({(r["n"], r["threads"]) for r in rows}, key=lambda c: (-c[0], -c[1]))
    by = {(r["case"], r["pass"], r["n"], r["threads"]): r for r in rows}
    keys = []
    for r in rows:
        if (r["case"], r["pass"]) not in keys:
            keys.append((r["case"], r["pass"]))
    big, k0 = configs[0]
    head = (f"| operator | pass | bytes/elem | ms (2^{big.bit_length() - 1}, {k0}t) | GB/s | " +
            " | ".join(f"2^{n.bit_length() - 1}, {k}t: of copy, x torch" for n, k in configs) + " |")
    print(head)
    print("|---" * (5 + len(configs)) + "|")
    for case, pass_ in keys:
        first = by[(case, pass_, big, k0)]
        cells = []
        for n, k in configs:
            r = by.get((case, pass_, n, k))
            beside = "" if r is None or "copy_fraction_beside" not in r else \
                f" [{r['copy_fraction_beside']}]"
            cells.append("" if r is None else f"{r['copy_fraction_best']}{beside}, "
                         f"{r['speedup_best']} ({r['speedup_median']})")
        print(f"| `{case}` | {pass_.replace('_', '+')} | {first['bytes_per_element']} | "
              f"{first['ours_best_ms']} | {first['gbps_best']} | " + " | ".join(cells) + " |")
    copies = ", ".join(f"2^{n.bit_length() - 1} {k}t {by[keys[0] + (n, k)]['copy_gbps_best']} GB/s"
                       for n, k in configs)
    print(f"\nCopy bandwidth (best sample): {copies}.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory", choices=["fresh", "retained", "both"], default="both")
    ap.add_argument("--sizes", default=None,
                    help="comma-separated log2 sizes (default 20,24 on the CPU, 28 on CUDA)")
    ap.add_argument("--threads", default="2,1", help="comma-separated intra-op thread counts")
    ap.add_argument("--repeat", type=int, default=7, help="samples per side and case in each run")
    ap.add_argument("--runs", type=int, default=1,
                    help="sweeps over every case; each figure is over the samples of all of them")
    ap.add_argument("--only", default="", help="comma-separated substrings of operator names")
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    ap.add_argument("--table", metavar="JSONL", help="print the Markdown tables of a run and exit")
    ap.add_argument("--roofline", metavar="JSONL",
                    help="print a run as one Markdown table (docs/performance.md) and exit")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    if args.table:
        table(args.table)
        return
    if args.roofline:
        roofline(args.roofline)
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    args.sizes = args.sizes or ("28" if args.device == "cuda" else "20,24")
    sizes = [1 << int(s) for s in args.sizes.split(",")]
    threads = [int(k) for k in args.threads.split(",")]
    only = [o for o in args.only.split(",") if o]
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            sys.exit("bench/ops.py: --device cuda: torch sees no CUDA device here")
        run("caching", sizes, threads, args.repeat, args.runs, only, None, "cuda")
        return
    if args.memory == "both":
        for mode in ("fresh", "retained"):
            cmd = [sys.executable, __file__, "--memory", mode, "--sizes", args.sizes,
                   "--threads", args.threads, "--repeat", str(args.repeat), "--runs",
                   str(args.runs), "--only", args.only]
            subprocess.run(cmd + (["--out", args.out] if args.out else []), check=True)
        return
    if args.memory == "retained" and os.environ.get("MALLOC_CONF") != RETAIN:
        if not os.path.exists(JEMALLOC):
            sys.exit(f"bench/ops.py: {JEMALLOC} is missing (./scripts/setup installs libjemalloc2)")
        env = dict(os.environ, LD_PRELOAD=JEMALLOC, MALLOC_CONF=RETAIN)
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    with open(args.out, "a") if args.out else open(os.devnull, "w") as out:
        run(args.memory, sizes, threads, args.repeat, args.runs, only, out if args.out else None)


if __name__ == "__main__":
    main()
