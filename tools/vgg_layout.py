"""The VGG conv stacks as data, mirroring crates/vgg/src/arch.rs, and the weights-directory writer.

A weights directory holds one float32 .npy per tensor -- ``conv{B}_{I}.weight.npy`` (C_out x C_in
x 3 x 3, PyTorch's OIHW order) and ``conv{B}_{I}.bias.npy`` (C_out) -- and ``manifest.json`` with
the architecture, the preprocessing, the provenance and a SHA-256 per file.
"""

import hashlib
import json
import os

BLOCK_WIDTHS = [64, 128, 256, 512, 512]
CONVS_PER_BLOCK = {"vgg16": [2, 2, 3, 3, 3], "vgg19": [2, 2, 4, 4, 4]}

# Preprocessing, with mean and std in the network's own channel order.
TORCHVISION = {"channel_order": "RGB", "scale": 1.0,
               "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
CAFFE = {"channel_order": "BGR", "scale": 255.0,
         "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0]}


def convs(arch):
    """[(name, c_in, c_out, torchvision features index)] in forward order."""
    out, c_in, idx = [], 3, 0
    for b, (n, width) in enumerate(zip(CONVS_PER_BLOCK[arch], BLOCK_WIDTHS), start=1):
        for i in range(1, n + 1):
            out.append((f"conv{b}_{i}", c_in, width, idx))
            c_in = width
            idx += 2  # conv, relu
        idx += 1  # pool
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_weights_dir(out_dir, arch, tensors, preprocessing, source):
    """Validates ``tensors`` ({"conv1_1.weight": array, ...}) against ``arch`` and writes them.

    Writes into a temporary sibling directory and renames it into place, so an interrupted run
    never leaves a half-written directory that looks complete.
    """
    import numpy as np

    tmp = out_dir.rstrip("/") + ".partial"
    os.makedirs(tmp, exist_ok=True)
    files = {}
    for name, c_in, c_out, _ in convs(arch):
        for kind, shape in (("weight", (c_out, c_in, 3, 3)), ("bias", (c_out,))):
            a = np.ascontiguousarray(tensors[f"{name}.{kind}"], dtype="<f4")
            if a.shape != shape:
                raise SystemExit(f"error: {name}.{kind} has shape {a.shape}, expected {shape}")
            fname = f"{name}.{kind}.npy"
            np.save(os.path.join(tmp, fname), a)
            files[fname] = sha256_file(os.path.join(tmp, fname))
    manifest = {"architecture": arch, "preprocessing": preprocessing, "source": source,
                "files": files}
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    if os.path.isdir(out_dir):
        import shutil
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def verify_weights_dir(out_dir, arch):
    """True if ``out_dir`` holds a complete ``arch`` directory whose files match the manifest."""
    path = os.path.join(out_dir, "manifest.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("architecture") != arch:
        return False
    for name, _, _, _ in convs(arch):
        for kind in ("weight", "bias"):
            fname = f"{name}.{kind}.npy"
            fpath = os.path.join(out_dir, fname)
            if not os.path.isfile(fpath) or sha256_file(fpath) != manifest["files"].get(fname):
                return False
    return True


def synthetic_tensors(arch, seed=0):
    """Deterministic He-scaled random conv weights in OIHW order, for converter tests.

    Uses NumPy's legacy ``RandomState``, whose stream is frozen across NumPy versions, so the
    PyTorch-made fixtures and the tests regenerate exactly the same numbers.
    """
    import numpy as np

    rng = np.random.RandomState(seed)
    tensors = {}
    for name, c_in, c_out, _ in convs(arch):
        std = (2.0 / (9 * c_in)) ** 0.5
        tensors[f"{name}.weight"] = (rng.randn(c_out, c_in, 3, 3) * std).astype("<f4")
        tensors[f"{name}.bias"] = (rng.randn(c_out) * 0.1).astype("<f4")
    return tensors
