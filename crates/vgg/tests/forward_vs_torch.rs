//! Our forward pass against PyTorch's, to 1e-4 relative, on fixtures made by
//! `tools/torch_reference.py fixtures`: the real ImageNet VGG16 on a 20×17 crop of the Tübingen
//! photo, and a synthetic VGG19 as converted by the tools from a torchvision state dict and from
//! a Keras `.h5` (directories left by `tools/test_tools.py`).

use nst_tensor::ndarray::{ArrayD, IxDyn};
use nst_tensor::Graph;
use nst_vgg::Vgg;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Loads a weights directory, or fails saying how to make it.
fn load(dir: &Path, how: &str) -> Vgg {
    Vgg::load(dir).unwrap_or_else(|e| panic!("this test needs {}: {e}\n{how}", dir.display()))
}

fn read_npy(path: &Path) -> ArrayD<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), npy.into_vec::<f32>().unwrap()).unwrap()
}

/// Compares `vgg`'s features of `fixtures/input.npy` with `fixtures/{prefix}{layer}.npy`:
/// every element within 1e-4 of the layer's largest magnitude.
fn assert_matches_torch(vgg: &Vgg, fixtures: &Path, prefix: &str, layers: &[&str]) {
    let x = read_npy(&fixtures.join("input.npy"));
    let names: Vec<String> = layers.iter().map(|s| s.to_string()).collect();
    let g = Graph::new();
    let feats = vgg.features(g.constant(Arc::new(x)), &names).unwrap();
    for (name, f) in names.iter().zip(feats) {
        let want = read_npy(&fixtures.join(format!("{prefix}{name}.npy")));
        let got = f.value();
        assert_eq!(got.shape(), want.shape(), "{name}");
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(want.iter())
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-4 * scale,
            "{prefix}{name}: max |ours − torch| = {worst:e}, 1e-4 of max |torch| = {:e}",
            1e-4 * scale
        );
    }
}

#[test]
fn vgg16_features_match_pytorch() {
    let vgg = load(
        &root().join("weights/vgg16"),
        "fetch the weights with: python3 tools/fetch_weights.py",
    );
    let fixtures = root().join("tests/fixtures/vgg16_forward");
    assert_matches_torch(
        &vgg,
        &fixtures,
        "",
        &["conv1_1", "relu2_2", "relu3_1", "conv4_2", "relu5_1"],
    );
}

/// The converters' output runs exactly like the framework's model: weight layout (OIHW vs
/// Keras' HWIO), layer order and preprocessing all have to be right.
#[test]
fn converted_vgg19_matches_pytorch() {
    let fixtures = root().join("tests/fixtures/vgg19_synthetic");
    for (dir, prefix) in [
        ("vgg19-torchvision", "torchvision_"),
        ("vgg19-keras", "caffe_"),
    ] {
        let how = "make it with: python3 tools/test_tools.py (tools/test.sh runs it first)";
        let vgg = load(&root().join("tools/.cache/converted").join(dir), how);
        assert_matches_torch(&vgg, &fixtures, prefix, &["conv1_2", "relu3_4", "relu5_4"]);
    }
}
