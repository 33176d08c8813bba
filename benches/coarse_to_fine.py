#!/usr/bin/env python3
"""Coarse to fine against PyTorch's single-scale L-BFGS, both processes timed whole.

    python3 benches/coarse_to_fine.py [--size 512] [--torch-evals 200] [--threads 2]
                                      [--runs auto:300,auto:150,none:100] [--repeat 1]

PyTorch runs L-BFGS (strong Wolfe, history 100; tools/torch_reference.py) for --torch-evals
evaluations at the size, from the content image; its best total loss is the bar. Each nst run
(`SCALES:ITERS[:PRECONDITION]`) is `nst transfer --scales SCALES --iters ITERS [--precondition
PRECONDITION] --output out.npy`, and the run `default` is `nst transfer --size SIZE` with every
other option at its default (the issue's "nothing but --size"); each output is then evaluated at the
same size by `nst eval` on the raw .npy (the classic objective, alpha=5, beta=500, gamma=0), so
every number is the same objective at the same size. Reported, under a line naming the processor:
loss and wall time of each run and their ratios to PyTorch's. With --repeat N the whole comparison
(PyTorch, then every nst run) is made N times in turn, each ratio taken within its own round, and
the median of each run's time ratios is printed at the end: on a shared machine either side's speed
drifts by 10-20% from hour to hour, and only ratios measured side by side mean anything. Needs the
release binary and tools/.venv-torch (see compare_pytorch.py).
"""
import argparse
import statistics
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import NST, ROOT, TORCH_PY, prepare, processor  # noqa: E402


def timed(cmd):
    start = time.monotonic()
    out = subprocess.check_output(cmd)
    return out, time.monotonic() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--torch-evals", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", default="auto:300,auto:150,none:100")
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    if a.repeat < 1:
        p.error("--repeat must be at least 1")
    weights = os.path.join(ROOT, "weights", "vgg16")
    ratios = {}
    print(f"processor: {processor()}, {a.threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        content, style = prepare(tmp, a.size, False)
        for round_ in range(1, a.repeat + 1):
            if a.repeat > 1:
                print(f"round {round_} of {a.repeat}")
            compare(a, tmp, content, style, weights, ratios)
    if a.repeat > 1:
        print("median time / PyTorch's over the rounds:")
        for label, r in ratios.items():
            print(f"  {label}: {statistics.median(r):.3f} ({', '.join(f'{x:.2f}' for x in r)})")


def compare(a, tmp, content, style, weights, ratios):
    """One round: PyTorch's run, then each nst run, each nst time divided by this round's PyTorch
    time (appended to `ratios[label]`)."""
    out, torch_s = timed([TORCH_PY, os.path.join(ROOT, "tools", "torch_reference.py"), "lbfgs",
                          "--content", content, "--style", style, "--evals", str(a.torch_evals),
                          "--threads", str(a.threads), "--weights", weights])
    torch_best = min(e["total"] for e in json.loads(out)["log"])
    print(f"PyTorch L-BFGS, {a.torch_evals} evaluations at {a.size} px: best loss {torch_best:.4e}, "
          f"{torch_s:.0f} s")
    print("| nst run | loss at the output | loss / PyTorch's | wall s | time / PyTorch's |")
    print("|---|---|---|---|---|")
    for run in a.runs.split(","):
        result = os.path.join(tmp, "out.npy")
        common = ["--content", content, "--style", style, "--weights", weights,
                  "--threads", str(a.threads)]
        weights_flags = ["--content-weight", "5", "--style-weight", "500", "--tv-weight", "0"]
        if run == "default":
            # Nothing but the size: the defaults a new user gets.
            options = []
        else:
            scales, iters, *precondition = run.split(":")
            options = [*weights_flags, "--scales", scales, "--iters", iters]
            options += ["--precondition", precondition[0]] if precondition else []
        _, s = timed([NST, "transfer", *common, *options, "--size", str(a.size),
                      "--output", result, "--quiet"])
        ev, _ = timed([NST, "eval", *common, *weights_flags, "--image", result, "--json"])
        loss = json.loads(ev)["total"]
        label = "defaults (`--size` only)" if run == "default" else " ".join(options[len(weights_flags):])
        ratios.setdefault(label, []).append(s / torch_s)
        print(f"| {label} | {loss:.4e} | {loss / torch_best:.3f} | {s:.0f} | "
              f"{s / torch_s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
