#!/usr/bin/env python3
"""An independent PyTorch implementation of the objective, to cross-check the Rust one.

    python3 tools/torch_reference.py fixtures     # (re)write tests/fixtures/ from PyTorch
    python3 tools/torch_reference.py lbfgs ...    # used by benches/*.py

Installs PyTorch into a throw-away venv (tools/.venv-torch) on first use and re-runs itself
there. The Rust tests never need PyTorch: they read the committed fixtures.

Conventions (the same formulas as crates/loss, written again from the issue's definitions):
    content  L_c = mean_l mean_i (F_l(x) - F_l(c))^2
    style    L_s = mean_l mean_ij (G_l(x) - A_l)^2,  G = F F^T / (C H W)
    tv       L_tv = [sum dh^2 + sum dw^2] / (3 H W)
    total    L = a L_c + b L_s + g L_tv
The image variable is RGB in [0,1], 1x3xHxW; the network's preprocessing comes from the
weights' manifest.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv-torch")


sys.path.insert(0, HERE)
import tool_venv  # noqa: E402

tool_venv.ensure_venv(__file__, VENV, ["torch", "numpy", "pillow"])

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

import vgg_layout  # noqa: E402

torch.set_grad_enabled(True)


class TorchVgg:
    def __init__(self, weights_dir, pooling="max"):
        with open(os.path.join(weights_dir, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.arch = self.manifest["architecture"]
        self.convs = []
        for name, _, _, _ in vgg_layout.convs(self.arch):
            w = torch.from_numpy(np.load(os.path.join(weights_dir, f"{name}.weight.npy")))
            b = torch.from_numpy(np.load(os.path.join(weights_dir, f"{name}.bias.npy")))
            self.convs.append((name, w, b))
        self.pooling = pooling

    def preprocess(self, x):
        p = self.manifest["preprocessing"]
        if p["channel_order"] == "BGR":
            x = x[:, [2, 1, 0]]
        mean = torch.tensor(p["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(p["std"]).view(1, 3, 1, 1)
        return (x * p["scale"] - mean) / std

    def features(self, x, names):
        out = {}
        h = self.preprocess(x)
        block_of = lambda n: int(n[4:].split("_")[0])  # noqa: E731
        for k, (name, w, b) in enumerate(self.convs):
            h = F.conv2d(h, w, b, padding=1)
            out[name] = h
            h = F.relu(h)
            out["relu" + name[4:]] = h
            if all(n in out for n in names):
                break
            last_in_block = k + 1 == len(self.convs) or block_of(self.convs[k + 1][0]) != block_of(name)
            if last_in_block:
                pool = F.max_pool2d if self.pooling == "max" else F.avg_pool2d
                h = pool(h, 2, 2)
                out[f"pool{block_of(name)}"] = h
            if all(n in out for n in names):
                break
        return [out[n] for n in names]


def gram(f):
    _, c, h, w = f.shape
    m = f.reshape(c, h * w)
    return m @ m.t() / (c * h * w)


class TorchObjective:
    def __init__(self, vgg, content, styles, blend, content_layers, style_layers, a, b, g):
        self.vgg, self.cl, self.sl, self.a, self.b, self.g = vgg, content_layers, style_layers, a, b, g
        with torch.no_grad():
            self.content_targets = vgg.features(content, content_layers)
            total = sum(blend)
            grams = [[gram(f) for f in vgg.features(s, style_layers)] for s in styles]
            self.style_targets = [sum(bw / total * gs[l] for bw, gs in zip(blend, grams))
                                  for l in range(len(style_layers))]

    def terms(self, x):
        feats = self.vgg.features(x, self.cl + self.sl)
        fc, fs = feats[: len(self.cl)], feats[len(self.cl):]
        lc = sum(((f - p) ** 2).mean() for f, p in zip(fc, self.content_targets)) / len(fc)
        ls = sum(((gram(f) - a) ** 2).mean() for f, a in zip(fs, self.style_targets)) / len(fs)
        dh = x[:, :, 1:, :] - x[:, :, :-1, :]
        dw = x[:, :, :, 1:] - x[:, :, :, :-1]
        ltv = ((dh ** 2).sum() + (dw ** 2).sum()) / x.numel()
        return self.a * lc + self.b * ls + self.g * ltv, lc, ls, ltv


def load_image(path):
    """RGB in [0,1], 1x3xHxW, exactly as the Rust loader reads an 8-bit file (value / 255)."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a.transpose(2, 0, 1).copy()).unsqueeze(0)


def to_hwc(t):
    return t.detach().squeeze(0).permute(1, 2, 0).contiguous().numpy().astype("<f4")


def write_fixtures():
    weights = os.path.join(ROOT, "weights", "vgg16")
    data = os.path.join(ROOT, "tests", "data")
    out = os.path.join(ROOT, "tests", "fixtures")
    vgg = TorchVgg(weights)

    # 1. VGG16 forward on a 20x17 crop (odd width: floor pooling) of the Tubingen photo.
    fwd = os.path.join(out, "vgg16_forward")
    os.makedirs(fwd, exist_ok=True)
    img = Image.open(os.path.join(data, "tubingen.jpg")).convert("RGB").resize((17, 20), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).transpose(2, 0, 1).copy() / 255.0).unsqueeze(0)
    np.save(os.path.join(fwd, "input.npy"), x.numpy().astype("<f4"))
    layers = ["conv1_1", "relu2_2", "relu3_1", "conv4_2", "relu5_1"]
    with torch.no_grad():
        for name, f in zip(layers, vgg.features(x, layers)):
            np.save(os.path.join(fwd, f"{name}.npy"), f.numpy().astype("<f4"))

    # 2. One gradient-descent step from a perturbed copy of a 48x36 content image.
    gd = os.path.join(out, "gd_step")
    os.makedirs(gd, exist_ok=True)
    for name, src, size in (("content.png", "tubingen.jpg", (48, 36)), ("style.png", "starry_night.jpg", (48, 30))):
        Image.open(os.path.join(data, src)).convert("RGB").resize(size, Image.LANCZOS).save(os.path.join(gd, name))
    content = load_image(os.path.join(gd, "content.png"))
    style = load_image(os.path.join(gd, "style.png"))
    rng = np.random.default_rng(0)
    x0 = content + torch.from_numpy(rng.uniform(-0.1, 0.1, content.shape).astype(np.float32))
    settings = {"content_weight": 5.0, "style_weight": 500.0, "tv_weight": 100.0, "lr": 1e-7,
                "content_layers": ["relu4_2"],
                "style_layers": ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]}
    obj = TorchObjective(vgg, content, [style], [1.0], settings["content_layers"], settings["style_layers"],
                         settings["content_weight"], settings["style_weight"], settings["tv_weight"])
    x = x0.clone().requires_grad_(True)
    total, lc, ls, ltv = obj.terms(x)
    total.backward()
    np.save(os.path.join(gd, "x0.npy"), to_hwc(x0))
    np.save(os.path.join(gd, "grad.npy"), to_hwc(x.grad))
    settings.update({"total": total.item(), "content": lc.item(), "style": ls.item(), "tv": ltv.item(),
                     "torch": torch.__version__})
    with open(os.path.join(gd, "reference.json"), "w") as f:
        json.dump(settings, f, indent=2)
    write_converter_fixtures(out)
    print(f"fixtures written under {out}: total {total.item():.6g}")


def write_converter_fixtures(out):
    """Fixtures for the converters: tiny checkpoints in both torch.save formats, and the
    features of a synthetic VGG19 (vgg_layout.synthetic_tensors) under both preprocessings."""
    import collections

    tools_fx = os.path.join(HERE, "fixtures")
    os.makedirs(tools_fx, exist_ok=True)
    base = torch.arange(12, dtype=torch.float32)
    state = collections.OrderedDict([
        ("plain", torch.arange(6, dtype=torch.float32).reshape(2, 3)),
        ("transposed", base.reshape(3, 4).t()),       # non-contiguous strides
        ("offset", base[5:].reshape(7)),               # a view with a storage offset
        ("scalar", torch.tensor(2.5)),
    ])
    torch.save(state, os.path.join(tools_fx, "tiny_zip.pth"))
    torch.save(state, os.path.join(tools_fx, "tiny_legacy.pth"), _use_new_zipfile_serialization=False)

    syn = os.path.join(out, "vgg19_synthetic")
    os.makedirs(syn, exist_ok=True)
    tensors = vgg_layout.synthetic_tensors("vgg19", seed=0)
    x = torch.from_numpy(np.random.RandomState(1).rand(1, 3, 20, 17).astype(np.float32))
    np.save(os.path.join(syn, "input.npy"), x.numpy())
    for prep_name, prep in (("torchvision", vgg_layout.TORCHVISION), ("caffe", vgg_layout.CAFFE)):
        vgg = TorchVgg.__new__(TorchVgg)
        vgg.manifest = {"preprocessing": prep}
        vgg.arch = "vgg19"
        vgg.pooling = "max"
        vgg.convs = [(name, torch.from_numpy(tensors[f"{name}.weight"]), torch.from_numpy(tensors[f"{name}.bias"]))
                     for name, _, _, _ in vgg_layout.convs("vgg19")]
        with torch.no_grad():
            for name, f in zip(["conv1_2", "relu3_4", "relu5_4"], vgg.features(x, ["conv1_2", "relu3_4", "relu5_4"])):
                np.save(os.path.join(syn, f"{prep_name}_{name}.npy"), f.numpy().astype("<f4"))


def run_lbfgs(args):
    """L-BFGS with strong Wolfe for a fixed number of evaluations; prints a JSON summary.

    With --checkpoint the run can span several sittings: every --checkpoint-every iterations it
    saves the image, the optimizer's state (its history included) and the log, and a run started
    with an existing checkpoint goes on from there. The trajectory is the same as one sitting's:
    torch's LBFGS re-evaluates the current point at the start of each step() call, and the
    closure answers that from a small cache of the points it has evaluated, so no evaluation is
    repeated or counted twice."""
    import argparse
    import time

    p = argparse.ArgumentParser()
    p.add_argument("--content")
    p.add_argument("--style")
    p.add_argument("--weights", default=os.path.join(ROOT, "weights", "vgg16"))
    p.add_argument("--evals", type=int, default=100)
    p.add_argument("--content-weight", type=float, default=5.0)
    p.add_argument("--style-weight", type=float, default=500.0)
    p.add_argument("--tv-weight", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-jsonl", help="also append each evaluation to this file as it is made "
                   "(for runs too long to wait for the summary)")
    p.add_argument("--checkpoint", help="save the run to this file as it goes, and resume from it "
                   "if it exists (for runs longer than a sitting)")
    p.add_argument("--checkpoint-every", type=int, default=10, help="iterations between saves")
    a = p.parse_args(args)
    torch.set_num_threads(a.threads)
    vgg = TorchVgg(a.weights)
    content, style = load_image(a.content), load_image(a.style)
    layers = (["relu4_2"], ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    obj = TorchObjective(vgg, content, [style], [1.0], *layers, a.content_weight, a.style_weight, a.tv_weight)
    x = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=a.evals, max_eval=a.evals, history_size=100,
                            line_search_fn="strong_wolfe", tolerance_grad=0, tolerance_change=0)
    log = []
    # (point, loss, gradient) of the latest evaluations, newest last: a line search may end on a
    # point it evaluated before its last one.
    seen = []
    if a.checkpoint and os.path.exists(a.checkpoint):
        saved = torch.load(a.checkpoint)
        with torch.no_grad():
            x.copy_(saved["x"])
        opt.load_state_dict(saved["optimizer"])
        log, seen = saved["log"], [saved["current"]]

    def closure():
        for point, loss, grad in reversed(seen):
            if torch.equal(point, x.detach()):
                x.grad = grad.clone()
                return loss
        t0 = time.perf_counter()
        opt.zero_grad()
        total, lc, ls, ltv = obj.terms(x)
        total.backward()
        log.append({"eval": len(log) + 1, "total": total.item(), "content": lc.item(),
                    "style": ls.item(), "tv": ltv.item(), "ms": 1e3 * (time.perf_counter() - t0)})
        if a.log_jsonl:
            with open(a.log_jsonl, "a") as f:
                f.write(json.dumps(log[-1]) + "\n")
        seen.append((x.detach().clone(), total.detach(), x.grad.clone()))
        del seen[:-4]
        return total

    # Without a checkpoint, one step() call does the whole run.
    every = a.checkpoint_every if a.checkpoint else a.evals
    while len(log) < a.evals:
        # step() counts its first evaluation of the current point, answered from `seen` after
        # the first call: allow for it so the run stops where one long call would.
        first_is_new = not seen
        opt.param_groups[0]["max_iter"] = every
        opt.param_groups[0]["max_eval"] = a.evals - len(log) + (0 if first_is_new else 1)
        n_iter = opt.state[x].get("n_iter", 0)
        opt.step(closure)
        if a.checkpoint:
            current = next(s for s in reversed(seen) if torch.equal(s[0], x.detach()))
            tmp = a.checkpoint + ".tmp"
            torch.save({"x": x.detach(), "optimizer": opt.state_dict(), "log": log, "current": current}, tmp)
            os.replace(tmp, a.checkpoint)
        if opt.state[x]["n_iter"] - n_iter < every:
            break  # stopped by its own criteria (budget reached, or no progress possible)
    with torch.no_grad():
        final = obj.terms(x)
    print(json.dumps({"evals": len(log), "final_total": final[0].item(), "final_content": final[1].item(),
                      "final_style": final[2].item(), "log": log}))


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "fixtures":
        write_fixtures()
    elif len(sys.argv) >= 2 and sys.argv[1] == "lbfgs":
        run_lbfgs(sys.argv[2:])
    else:
        sys.exit(__doc__)
