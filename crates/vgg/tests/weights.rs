//! Loading and validating weights directories, on synthetic VGG-shaped weights the test writes.

use nst_tensor::ndarray::{ArrayD, IxDyn};
use nst_tensor::Graph;
use nst_vgg::weights::{npy_bytes, sha256_hex};
use nst_vgg::{Architecture, ConvWeights, Preprocessing, Vgg, VggError, Weights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A fresh directory under the target dir, unique per test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// VGG-shaped random weights (He-scaled, so activations stay O(1) through the depth).
fn synthetic(arch: Architecture, seed: u64) -> Vec<ConvWeights> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    arch.convs()
        .iter()
        .map(|s| {
            let scale = (2.0 / (9 * s.c_in) as f32).sqrt();
            let n = s.c_out * s.c_in * 9;
            let w: Vec<f32> = (0..n)
                .map(|_| rng.random_range(-1.7f32..1.7) * scale)
                .collect();
            let b: Vec<f32> = (0..s.c_out)
                .map(|_| rng.random_range(-0.1f32..0.1))
                .collect();
            ConvWeights {
                weight: Arc::new(ArrayD::from_shape_vec(IxDyn(&s.weight_shape()), w).unwrap()),
                bias: Arc::new(ArrayD::from_shape_vec(IxDyn(&[s.c_out]), b).unwrap()),
            }
        })
        .collect()
}

fn write(dir: &Path, arch: Architecture) {
    Weights::save(
        dir,
        arch,
        Preprocessing::torchvision(),
        "synthetic",
        &synthetic(arch, 1),
    )
    .unwrap();
}

fn image(h: usize, w: usize) -> ArrayD<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    ArrayD::from_shape_fn(IxDyn(&[1, 3, h, w]), |_| rng.random_range(0.0f32..1.0))
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Replaces a file's bytes and updates the manifest's hash, so that a check *other* than the
/// hash is the one that must catch the problem.
fn replace_with_valid_hash(dir: &Path, file: &str, bytes: &[u8]) {
    std::fs::write(dir.join(file), bytes).unwrap();
    let path = dir.join("manifest.json");
    let mut m: nst_vgg::Manifest =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m.files.insert(file.into(), sha256_hex(bytes));
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
}

#[test]
fn round_trip_and_feature_shapes() {
    let dir = scratch("round_trip");
    write(&dir, Architecture::Vgg19);
    let vgg = Vgg::load(&dir).unwrap();
    assert_eq!(vgg.arch(), Architecture::Vgg19);
    let g = Graph::new();
    let x = g.param(image(37, 45));
    let want = names(&["relu5_4", "conv1_1", "relu1_1", "pool2", "relu4_2"]);
    let f = vgg.features(x, &want).unwrap();
    let shapes: Vec<Vec<usize>> = f.iter().map(|v| v.shape()).collect();
    // Odd sizes pool with floor: 37×45 → 18×22 → 9×11 → 4×5.
    assert_eq!(
        shapes,
        vec![
            vec![1, 512, 2, 2],
            vec![1, 64, 37, 45],
            vec![1, 64, 37, 45],
            vec![1, 128, 9, 11],
            vec![1, 512, 4, 5]
        ]
    );
    // conv1_1 is before the ReLU, relu1_1 after it: different tensors.
    let (conv, relu) = (f[1].value(), f[2].value());
    assert!(conv.iter().any(|&v| v < 0.0));
    assert_eq!(*relu, conv.mapv(|v| v.max(0.0)));
    assert!(f.iter().all(|v| v.requires_grad()));
}

/// `features_unless` asks its stop check before each layer it runs and ends at the first yes
/// with `Ok(None)`; never told to stop, it gives what `features` gives.
#[test]
fn features_unless_stops_before_the_next_layer() {
    let dir = scratch("features_unless");
    write(&dir, Architecture::Vgg16);
    let vgg = Vgg::load(&dir).unwrap();
    let want = names(&["relu2_1"]);
    // The maps' values, and how often `stop` was asked, when it says yes at its `at`-th
    // question (never, for 0).
    let run = |at: usize| {
        let g = Graph::new();
        let asked = std::cell::Cell::new(0);
        let maps = vgg
            .features_unless(g.param(image(21, 19)), &want, &|| {
                asked.set(asked.get() + 1);
                asked.get() == at
            })
            .unwrap();
        let values = maps.map(|m| m.iter().map(|v| v.value().as_ref().clone()).collect());
        (asked.get(), values)
    };
    let g = Graph::new();
    let whole: Vec<ArrayD<f32>> = vgg
        .features(g.param(image(21, 19)), &want)
        .unwrap()
        .iter()
        .map(|v| v.value().as_ref().clone())
        .collect();
    let (layers, all) = run(0);
    assert_eq!(
        layers, 7,
        "conv1_1 relu1_1 conv1_2 relu1_2 pool1 conv2_1 relu2_1"
    );
    assert_eq!(all, Some(whole));
    for at in 1..=layers {
        assert_eq!(run(at), (at, None), "stop at question {at}");
    }
}

#[test]
fn layer_errors_name_the_layer_and_list_the_valid_ones() {
    let dir = scratch("layer_errors");
    write(&dir, Architecture::Vgg16);
    let vgg = Vgg::load(&dir).unwrap();
    let g = Graph::new();
    let x = g.param(image(32, 32));
    let err = vgg
        .features(x, &names(&["relu4_2", "conv5_4"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'conv5_4'")
            && err.contains("vgg16")
            && err.contains("conv5_3, relu5_3, pool5"),
        "{err}"
    );
    let err = vgg
        .features(x, &names(&["relu_4_2"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown layer 'relu_4_2'"), "{err}");
    // 15 px: 15 → 7 → 3 → 1, and pool4 cannot pool a 1-pixel map, so relu5_1 is out of reach.
    let small = g.param(image(15, 40));
    let err = vgg.features(small, &names(&["relu5_1"])).unwrap_err();
    assert!(matches!(err, VggError::ImageTooSmall { .. }));
    assert!(err.to_string().contains("pool4"), "{err}");
    // Width × height, as everywhere else in the program.
    assert!(err.to_string().contains("image of 40×15 pixels"), "{err}");
    assert!(vgg.features(small, &names(&["relu4_1"])).is_ok());
}

#[test]
fn each_bad_file_gets_its_own_message() {
    let dir = scratch("bad_files");
    write(&dir, Architecture::Vgg16);
    let good = std::fs::read(dir.join("conv2_1.bias.npy")).unwrap();

    // Truncated data (header intact).
    replace_with_valid_hash(&dir, "conv2_1.bias.npy", &good[..good.len() - 8]);
    let err = Weights::load(&dir).unwrap_err();
    assert!(
        matches!(err, VggError::BadNpy { .. }) && err.to_string().contains("conv2_1.bias.npy"),
        "{err}"
    );

    // Wrong shape.
    let wrong = npy_bytes(&ArrayD::zeros(IxDyn(&[127])));
    replace_with_valid_hash(&dir, "conv2_1.bias.npy", &wrong);
    let err = Weights::load(&dir).unwrap_err();
    assert!(
        matches!(err, VggError::WrongShape { .. }) && err.to_string().contains("[127]"),
        "{err}"
    );

    // Wrong dtype: the same numbers as float64.
    let mut f64_npy = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (128,), }";
    let pad = 64 - (10 + header.len() + 1) % 64;
    let header = format!("{header}{}\n", " ".repeat(pad));
    f64_npy.extend((header.len() as u16).to_le_bytes());
    f64_npy.extend(header.as_bytes());
    f64_npy.extend(std::iter::repeat_n(0u8, 128 * 8));
    replace_with_valid_hash(&dir, "conv2_1.bias.npy", &f64_npy);
    let err = Weights::load(&dir).unwrap_err();
    assert!(
        matches!(err, VggError::WrongDtype { .. }) && err.to_string().contains("<f8"),
        "{err}"
    );

    // Far larger than the layer's tensor: refused from its size, before it is read.
    let mut huge = good.clone();
    huge.extend(std::iter::repeat_n(0u8, 1 << 20));
    replace_with_valid_hash(&dir, "conv2_1.bias.npy", &huge);
    let err = Weights::load(&dir).unwrap_err();
    assert!(
        matches!(err, VggError::BadNpy { .. }) && err.to_string().contains("not this layer"),
        "{err}"
    );

    // Valid file, stale hash.
    replace_with_valid_hash(&dir, "conv2_1.bias.npy", &good);
    let mut tampered = good.clone();
    *tampered.last_mut().unwrap() ^= 1;
    std::fs::write(dir.join("conv2_1.bias.npy"), &tampered).unwrap();
    let err = Weights::load(&dir).unwrap_err();
    assert!(
        matches!(err, VggError::HashMismatch { .. })
            && err.to_string().contains("conv2_1.bias.npy"),
        "{err}"
    );

    // Missing file.
    std::fs::remove_file(dir.join("conv2_1.bias.npy")).unwrap();
    let err = Weights::load(&dir).unwrap_err();
    assert!(matches!(err, VggError::MissingFile(_)), "{err}");

    // No manifest at all: the message says how to fetch.
    let err = Weights::load(&dir.join("nowhere")).unwrap_err().to_string();
    assert!(err.contains("fetch_weights.py"), "{err}");
}
