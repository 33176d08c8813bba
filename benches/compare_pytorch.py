#!/usr/bin/env python3
"""End-to-end comparison with PyTorch on the same machine, in the same run.

    python3 benches/compare_pytorch.py [--threads 2] [--quick]

For each size (256x192 and 512x384 crops of the demo images, written as PNGs so that both sides
read identical pixels), it runs PyTorch's L-BFGS (strong Wolfe, history 100, via
tools/torch_reference.py) and `nst transfer` with the same objective (VGG16, alpha=5, beta=500,
gamma=0, content init) and reports milliseconds per evaluation (median of each run's
evaluations) and the total loss each reaches in the same number of evaluations.
Needs the release binary (`cargo build --release -p nst-cli`) and tools/.venv-torch (made on
first use by tools/torch_reference.py).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_PY = os.path.join(ROOT, "tools", ".venv-torch", "bin", "python")
NST = os.path.join(ROOT, "target", "release", "nst")


def prepare(tmp, width):
    """Content and style PNGs whose longer side is `width`, made with PIL (in the torch venv)."""
    code = (
        "import sys; from PIL import Image\n"
        "src, dst, w = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
        "im = Image.open(src).convert('RGB'); s = w / max(im.size)\n"
        "im.resize((round(im.size[0]*s), round(im.size[1]*s)), Image.LANCZOS).save(dst)\n")
    paths = []
    for name in ("tubingen", "starry_night"):
        dst = os.path.join(tmp, f"{name}_{width}.png")
        subprocess.check_call([TORCH_PY, "-c", code, os.path.join(ROOT, "tests", "data", f"{name}.jpg"), dst, str(width)])
        paths.append(dst)
    return paths


def run_torch(content, style, evals, threads):
    out = subprocess.check_output([TORCH_PY, os.path.join(ROOT, "tools", "torch_reference.py"), "lbfgs",
                                   "--content", content, "--style", style, "--evals", str(evals),
                                   "--threads", str(threads)])
    return json.loads(out)


def run_nst(content, style, width, evals, threads, tmp):
    log = os.path.join(tmp, "log.jsonl")
    subprocess.check_call([NST, "transfer", "--content", content, "--style", style, "--size", str(width),
                           "--iters", str(evals), "--threads", str(threads), "--content-weight", "5",
                           "--style-weight", "500", "--tv-weight", "0", "--init", "content",
                           "--output", os.path.join(tmp, "out.npy"), "--log-json", log, "--quiet",
                           "--weights", os.path.join(ROOT, "weights", "vgg16")])
    with open(log) as f:
        return [json.loads(line) for line in f]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="fewer evaluations (timing only)")
    a = p.parse_args()
    if not os.path.exists(TORCH_PY):
        sys.exit("tools/.venv-torch is missing: run `python3 tools/torch_reference.py` once to create it")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width, evals in ((256, 20 if a.quick else 100), (512, 5 if a.quick else 100)):
            content, style = prepare(tmp, width)
            t = run_torch(content, style, evals, a.threads)
            ours = run_nst(content, style, width, t["evals"], a.threads, tmp)
            t_ms = statistics.median(e["ms"] for e in t["log"])
            o_ms = statistics.median(e["ms"] for e in ours)
            # Our last logged loss is at our last evaluated point; PyTorch's final_total is at its
            # final iterate. Compare like with like: the best total each evaluated.
            t_best = min(e["total"] for e in t["log"])
            o_best = min(e["total"] for e in ours)
            rows.append((width, t["evals"], t_ms, o_ms, t_best, o_best))
    print(f"threads: {a.threads}")
    print("| size | evaluations | PyTorch ms/eval | nst ms/eval | nst speed vs PyTorch | PyTorch best loss | nst best loss | nst/PyTorch loss |")
    print("|---|---|---|---|---|---|---|---|")
    for width, n, t_ms, o_ms, t_best, o_best in rows:
        h = width * 3 // 4
        print(f"| {width}×{h} | {n} | {t_ms:.0f} | {o_ms:.0f} | {t_ms / o_ms:.2f}× | {t_best:.4g} | {o_best:.4g} | {o_best / t_best:.3f} |")


if __name__ == "__main__":
    main()
