"""VGG19 from Keras' ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``.

The file has one HDF5 group per layer (``block1_conv1`` ... ``block5_conv4``), each holding a
4-D kernel in TensorFlow's HWIO order and a 1-D bias (dataset names vary between Keras versions,
so they are recognised by rank). Kernels are transposed to OIHW; Keras' convolution is a
cross-correlation like PyTorch's, so no flip. The weights descend from the Caffe model:
preprocessing is "caffe" (BGR, 0-255, mean-subtracted).
"""

import vgg_layout


def read_tensors(h5_path, arch="vgg19"):
    import h5py
    import numpy as np

    tensors = {}
    with h5py.File(h5_path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        for name, c_in, c_out, _ in vgg_layout.convs(arch):
            b, i = name[4:].split("_")
            group_name = f"block{b}_conv{i}"
            if group_name not in root:
                raise SystemExit(f"error: {h5_path} has no layer '{group_name}'")
            arrays = []
            root[group_name].visititems(
                lambda _, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
            kernels = [a for a in arrays if a.ndim == 4]
            biases = [a for a in arrays if a.ndim == 1]
            if len(kernels) != 1 or len(biases) != 1:
                raise SystemExit(f"error: layer '{group_name}' does not hold one kernel and one bias")
            tensors[f"{name}.weight"] = np.transpose(kernels[0], (3, 2, 0, 1))  # HWIO -> OIHW
            tensors[f"{name}.bias"] = biases[0]
    return tensors


def convert(h5_path, out_dir, arch="vgg19"):
    tensors = read_tensors(h5_path, arch)
    source = f"Keras {arch} notop weights {h5_path} (sha256 {vgg_layout.sha256_file(h5_path)})"
    vgg_layout.write_weights_dir(out_dir, arch, tensors, vgg_layout.CAFFE, source)
