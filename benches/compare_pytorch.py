#!/usr/bin/env python3
"""End-to-end comparison with PyTorch on the same machine, in the same run.

    python3 benches/compare_pytorch.py [--threads 2] [--quick] [--cases vgg16-256,vgg19-512]
                                       [--gemm matrixmultiply,gemm]

For each case — VGG16 at 256x192, 512x384 and 512x512, and VGG19 at 512x384 — it resizes the demo
images (written as PNGs so that both sides read identical pixels), runs PyTorch's L-BFGS (strong
Wolfe, history 100, via tools/torch_reference.py) and `nst transfer` with the same objective
(alpha=5, beta=500, gamma=0, content init, and the classic L-BFGS: `--precondition none`, so that
both follow the same trajectory) and reports (under a line naming the processor) milliseconds per
evaluation (median of each run's evaluations) and the total loss each reaches in the same number of
evaluations. VGG19 uses the full-size random weights in the torchvision layout that `python3
tools/test_tools.py` converts into tools/.cache/converted/vgg19-torchvision (the layer count, not
the values, sets the cost). With `--gemm`, nst runs once per named GEMM backend (`NST_GEMM`, see
crates/tensor/src/kernels/gemm.rs) after each PyTorch run, one row each: the measurement that
decides the default backend on a new kind of processor. Needs the release binary (`cargo build
--release -p nst-cli`) and tools/.venv-torch (made on first use by tools/torch_reference.py).
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


VGG19_DIR = os.path.join(ROOT, "tools", ".cache", "converted", "vgg19-torchvision")


def processor():
    """The processor as /proc/cpuinfo names it (as `nst bench` reports it), for the report's
    first line: every figure says which processor it was measured on."""
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0]  # the first processor's entries
    except OSError:
        return os.uname().machine
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    if "model name" not in fields:
        return os.uname().machine
    family, model = fields.get("cpu family", "?"), fields.get("model", "?")
    return f"{fields['model name']} (family {family}, model {model})"


def prepare(tmp, width, square):
    """Content and style PNGs whose longer side is `width` (or `width`x`width` when `square`),
    made with PIL (in the torch venv)."""
    code = (
        "import sys; from PIL import Image\n"
        "src, dst, w, sq = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'\n"
        "im = Image.open(src).convert('RGB'); s = w / max(im.size)\n"
        "size = (w, w) if sq else (round(im.size[0]*s), round(im.size[1]*s))\n"
        "im.resize(size, Image.LANCZOS).save(dst)\n")
    paths = []
    for name in ("tubingen", "starry_night"):
        dst = os.path.join(tmp, f"{name}_{width}_{int(square)}.png")
        subprocess.check_call([TORCH_PY, "-c", code, os.path.join(ROOT, "tests", "data", f"{name}.jpg"),
                               dst, str(width), "1" if square else "0"])
        paths.append(dst)
    return paths


def run_torch(content, style, evals, threads, weights):
    out = subprocess.check_output([TORCH_PY, os.path.join(ROOT, "tools", "torch_reference.py"), "lbfgs",
                                   "--content", content, "--style", style, "--evals", str(evals),
                                   "--threads", str(threads), "--weights", weights])
    return json.loads(out)


def run_nst(content, style, width, evals, threads, tmp, weights, gemm):
    log = os.path.join(tmp, "log.jsonl")
    env = dict(os.environ)
    if gemm:
        env["NST_GEMM"] = gemm
    subprocess.check_call([NST, "transfer", "--content", content, "--style", style, "--size", str(width),
                           "--iters", str(evals), "--threads", str(threads), "--content-weight", "5",
                           "--style-weight", "500", "--tv-weight", "0", "--init", "content", "--precondition", "none",
                           "--output", os.path.join(tmp, "out.npy"), "--log-json", log, "--quiet",
                           "--weights", weights], env=env)
    with open(log) as f:
        return [json.loads(line) for line in f]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="fewer evaluations (timing only)")
    p.add_argument("--cases", default="vgg16-256,vgg16-512,vgg16-512sq,vgg19-512",
                   help="which cases, comma-separated (a case may be listed twice to repeat it)")
    p.add_argument("--gemm", default="",
                   help="GEMM backends for nst, comma-separated (default: nst's own choice)")
    a = p.parse_args()
    if not os.path.exists(TORCH_PY):
        sys.exit("tools/.venv-torch is missing: run `python3 tools/torch_reference.py` once to create it")
    vgg16 = os.path.join(ROOT, "weights", "vgg16")
    # (network, weights, width, square, evaluations, evaluations with --quick)
    known = {"vgg16-256": ("VGG16", vgg16, 256, False, 100, 20),
             "vgg16-512": ("VGG16", vgg16, 512, False, 100, 5),
             "vgg16-512sq": ("VGG16", vgg16, 512, True, 30, 5),
             "vgg19-512": ("VGG19", VGG19_DIR, 512, False, 30, 5)}
    unknown = [c for c in a.cases.split(",") if c not in known]
    if unknown:
        sys.exit(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    cases = [known[c] for c in a.cases.split(",")]
    backends = [b for b in a.gemm.split(",") if b] or [""]
    if any(c[1] == VGG19_DIR for c in cases) and not os.path.exists(os.path.join(VGG19_DIR, "manifest.json")):
        sys.exit(f"{VGG19_DIR} is missing: run `python3 tools/test_tools.py` once to make it")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for net, weights, width, square, evals, quick_evals in cases:
            content, style = prepare(tmp, width, square)
            t = run_torch(content, style, quick_evals if a.quick else evals, a.threads, weights)
            t_ms = statistics.median(e["ms"] for e in t["log"])
            # Our last logged loss is at our last evaluated point; PyTorch's final_total is at its
            # final iterate. Compare like with like: the best total each evaluated.
            t_best = min(e["total"] for e in t["log"])
            h = width if square else width * 3 // 4
            for gemm in backends:
                ours = run_nst(content, style, width, t["evals"], a.threads, tmp, weights, gemm)
                o_ms = statistics.median(e["ms"] for e in ours)
                o_best = min(e["total"] for e in ours)
                rows.append((net, f"{width}×{h}", gemm or "default", t["evals"], t_ms, o_ms, t_best, o_best))
    print(f"processor: {processor()}")
    print(f"threads: {a.threads}")
    print("| network | size | nst GEMM | evaluations | PyTorch ms/eval | nst ms/eval | nst time / PyTorch time | PyTorch best loss | nst best loss | nst/PyTorch loss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for net, size, gemm, n, t_ms, o_ms, t_best, o_best in rows:
        print(f"| {net} | {size} | {gemm} | {n} | {t_ms:.0f} | {o_ms:.0f} | {o_ms / t_ms:.2f} | {t_best:.4g} | {o_best:.4g} | {o_best / t_best:.3f} |")


if __name__ == "__main__":
    main()
