//! The real ImageNet VGG16 against PyTorch: features of a 20×17 crop of the Tübingen photo equal
//! the committed fixture (made by `tools/torch_reference.py fixtures`) to 1e-4 relative.

use nst_tensor::ndarray::{ArrayD, IxDyn};
use nst_tensor::Graph;
use nst_vgg::Vgg;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fetched VGG16, or a failure that says how to fetch it.
fn vgg16() -> Vgg {
    let dir = root().join("weights/vgg16");
    Vgg::load(&dir).unwrap_or_else(|e| {
        panic!("this test needs the real VGG16 weights in {}: {e}\nfetch them with: python3 tools/fetch_weights.py", dir.display())
    })
}

fn read_npy(path: &Path) -> ArrayD<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), npy.into_vec::<f32>().unwrap()).unwrap()
}

#[test]
fn vgg16_features_match_pytorch() {
    let vgg = vgg16();
    let fixtures = root().join("tests/fixtures/vgg16_forward");
    let x = read_npy(&fixtures.join("input.npy"));
    let names: Vec<String> = ["conv1_1", "relu2_2", "relu3_1", "conv4_2", "relu5_1"]
        .map(String::from)
        .to_vec();
    let g = Graph::new();
    let feats = vgg.features(g.constant(Arc::new(x)), &names).unwrap();
    for (name, f) in names.iter().zip(feats) {
        let want = read_npy(&fixtures.join(format!("{name}.npy")));
        let got = f.value();
        assert_eq!(got.shape(), want.shape(), "{name}");
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(want.iter())
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-4 * scale,
            "{name}: max |ours − torch| = {worst:e}, 1e-4 of max |torch| = {:e}",
            1e-4 * scale
        );
    }
}
