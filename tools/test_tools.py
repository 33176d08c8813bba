#!/usr/bin/env python3
"""Tests of the weight tools, run by tools/test.sh (and so by CI) in tools/.venv.

Besides checking the converters here, it leaves converted synthetic VGG19 directories in
tools/.cache/converted/ for the Rust test that compares their forward pass with PyTorch's
(crates/vgg/tests/forward_vs_torch.rs).
"""

import os
import pickle
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tool_venv  # noqa: E402

tool_venv.ensure_venv(__file__, os.path.join(HERE, ".venv"), ["numpy>=1.24", "onnx>=1.14", "h5py>=3.8"])

import numpy as np  # noqa: E402

import convert_keras_vgg19  # noqa: E402
import convert_torch_vgg19  # noqa: E402
import vgg_layout  # noqa: E402

CONVERTED = os.path.join(HERE, ".cache", "converted")
ROOT = os.path.dirname(HERE)


class Layout(unittest.TestCase):
    def test_torchvision_feature_indices(self):
        # torchvision's vgg19().features: conv modules at these positions.
        want = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
        self.assertEqual([idx for *_, idx in vgg_layout.convs("vgg19")], want)
        self.assertEqual([idx for *_, idx in vgg_layout.convs("vgg16")],
                         [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28])


class TorchCheckpoints(unittest.TestCase):
    """The PyTorch-free .pth reader on tiny checkpoints written by torch.save
    (tools/torch_reference.py fixtures), in both of its formats."""

    def expected(self):
        base = np.arange(12, dtype=np.float32)
        return {"plain": np.arange(6, dtype=np.float32).reshape(2, 3),
                "transposed": base.reshape(3, 4).T, "offset": base[5:],
                "scalar": np.float32(2.5)}

    def check(self, name):
        got = convert_torch_vgg19.read_state_dict(os.path.join(HERE, "fixtures", name))
        want = self.expected()
        self.assertEqual(sorted(got), sorted(want))
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)

    def test_zip_format(self):
        self.check("tiny_zip.pth")

    def test_legacy_format(self):
        self.check("tiny_legacy.pth")

    def test_refuses_arbitrary_code(self):
        class Evil:
            def __reduce__(self):
                return (os.system, ("echo pwned",))

        with tempfile.NamedTemporaryFile(suffix=".pth") as f:
            pickle.dump(convert_torch_vgg19.LEGACY_MAGIC, f)
            pickle.dump(1001, f)
            pickle.dump({}, f)
            pickle.dump({"x": Evil()}, f)
            f.flush()
            with self.assertRaises(pickle.UnpicklingError):
                convert_torch_vgg19.read_state_dict(f.name)

    def test_vgg19_state_dict_conversion(self):
        tensors = vgg_layout.synthetic_tensors("vgg19", seed=0)
        state = {f"features.{idx}.{kind}": tensors[f"{name}.{kind}"]
                 for name, _, _, idx in vgg_layout.convs("vgg19") for kind in ("weight", "bias")}
        state["classifier.0.weight"] = np.zeros((2, 2), np.float32)  # ignored
        out = os.path.join(CONVERTED, "vgg19-torchvision")
        converted = convert_torch_vgg19.tensors_from_state_dict(state)
        vgg_layout.write_weights_dir(out, "vgg19", converted, vgg_layout.TORCHVISION, "synthetic")
        self.assertTrue(vgg_layout.verify_weights_dir(out, "vgg19"))
        np.testing.assert_array_equal(np.load(os.path.join(out, "conv3_4.weight.npy")), tensors["conv3_4.weight"])
        del state["features.34.bias"]
        with self.assertRaises(SystemExit) as e:
            convert_torch_vgg19.tensors_from_state_dict(state)
        self.assertIn("features.34.bias", str(e.exception))


class KerasH5(unittest.TestCase):
    def test_vgg19_h5_conversion(self):
        """A synthetic file in the exact layout of Keras' notop .h5: one group per layer with
        HWIO kernel and bias datasets named like ``block1_conv1_W_1:0``, and the attributes
        Keras writes."""
        import h5py

        tensors = vgg_layout.synthetic_tensors("vgg19", seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
            with h5py.File(path, "w") as f:
                names = []
                for name, _, _, _ in vgg_layout.convs("vgg19"):
                    b, i = name[4:].split("_")
                    layer = f"block{b}_conv{i}"
                    names.append(layer.encode())
                    g = f.create_group(layer)
                    kernel = np.transpose(tensors[f"{name}.weight"], (2, 3, 1, 0))  # OIHW -> HWIO
                    g.create_dataset(f"{layer}_W_1:0", data=kernel)
                    g.create_dataset(f"{layer}_b_1:0", data=tensors[f"{name}.bias"])
                    g.attrs["weight_names"] = [f"{layer}_W_1:0".encode(), f"{layer}_b_1:0".encode()]
                f.attrs["layer_names"] = names
            out = os.path.join(CONVERTED, "vgg19-keras")
            convert_keras_vgg19.convert(path, out)
        self.assertTrue(vgg_layout.verify_weights_dir(out, "vgg19"))
        for name in ("conv1_1", "conv5_4"):
            np.testing.assert_array_equal(np.load(os.path.join(out, f"{name}.weight.npy")),
                                          tensors[f"{name}.weight"])


class WeightsDirectory(unittest.TestCase):
    def test_verify_detects_a_changed_file(self):
        src = os.path.join(ROOT, "weights", "vgg16")
        self.assertTrue(vgg_layout.verify_weights_dir(src, "vgg16"),
                        "run python3 tools/fetch_weights.py first")
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "vgg16")
            shutil.copytree(src, copy)
            with open(os.path.join(copy, "conv5_3.bias.npy"), "r+b") as f:
                f.seek(-1, 2)
                last = f.read(1)
                f.seek(-1, 2)
                f.write(bytes([last[0] ^ 1]))
            self.assertFalse(vgg_layout.verify_weights_dir(copy, "vgg16"))
            self.assertFalse(vgg_layout.verify_weights_dir(copy, "vgg19"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
