//! Loading (and, for tests and converters, saving) a weights directory: one `.npy` per tensor,
//! `conv{B}_{I}.weight.npy` (float32, `C_out×C_in×3×3`) and `conv{B}_{I}.bias.npy` (float32,
//! `C_out`), plus `manifest.json`. Every file is checked — present, a valid `.npy`, float32,
//! the architecture's shape, the manifest's SHA-256 — and the first problem is reported by file
//! name.

use crate::arch::Architecture;
use crate::error::VggError;
use crate::manifest::{Manifest, Preprocessing};
use npyz::WriterBuilder;
use nst_tensor::ndarray::{ArrayD, IxDyn};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

/// The weights of one convolution.
#[derive(Clone, Debug)]
pub struct ConvWeights {
    /// `C_out×C_in×3×3`.
    pub weight: Arc<ArrayD<f32>>,
    /// `C_out`.
    pub bias: Arc<ArrayD<f32>>,
}

/// A loaded, validated weights directory.
#[derive(Clone, Debug)]
pub struct Weights {
    /// The architecture the manifest names.
    pub arch: Architecture,
    /// The manifest.
    pub manifest: Manifest,
    /// One entry per convolution, in forward order.
    pub convs: Vec<ConvWeights>,
}

/// The file names of a convolution's weight and bias.
pub fn file_names(conv: &str) -> (String, String) {
    (format!("{conv}.weight.npy"), format!("{conv}.bias.npy"))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Weights {
    /// Reads and validates `dir` (see the module documentation).
    pub fn load(dir: &Path) -> Result<Self, VggError> {
        let manifest_path = dir.join("manifest.json");
        let text = fs::read_to_string(&manifest_path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                VggError::Manifest {
                    path: manifest_path.clone(),
                    reason: "not found (fetch the weights with `python3 tools/fetch_weights.py`)"
                        .into(),
                }
            } else {
                VggError::Io {
                    path: manifest_path.clone(),
                    source,
                }
            }
        })?;
        let bad = |reason: String| VggError::Manifest {
            path: manifest_path.clone(),
            reason,
        };
        let (manifest, arch) = Manifest::parse(&text).map_err(bad)?;
        let mut convs = Vec::new();
        for spec in arch.convs() {
            let (wf, bf) = file_names(&spec.name());
            let weight = read_checked(dir, &wf, &spec.weight_shape(), &manifest, &bad)?;
            let bias = read_checked(dir, &bf, &[spec.c_out], &manifest, &bad)?;
            convs.push(ConvWeights {
                weight: Arc::new(weight),
                bias: Arc::new(bias),
            });
        }
        Ok(Weights {
            arch,
            manifest,
            convs,
        })
    }

    /// Writes a weights directory: each tensor as a float32 `.npy` and a manifest with their
    /// hashes. Used by tests (synthetic networks) and by anyone converting weights from Rust.
    pub fn save(
        dir: &Path,
        arch: Architecture,
        preprocessing: Preprocessing,
        source: &str,
        convs: &[ConvWeights],
    ) -> Result<(), VggError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| VggError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut files = BTreeMap::new();
        for (spec, cw) in arch.convs().iter().zip(convs) {
            let (wf, bf) = file_names(&spec.name());
            for (name, tensor) in [(wf, &cw.weight), (bf, &cw.bias)] {
                let bytes = npy_bytes(tensor);
                let path = dir.join(&name);
                fs::write(&path, &bytes).map_err(io(&path))?;
                files.insert(name, sha256_hex(&bytes));
            }
        }
        let manifest = Manifest {
            architecture: arch.name().into(),
            preprocessing,
            source: source.into(),
            files,
        };
        let path = dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest).expect("a manifest serialises");
        fs::write(&path, text).map_err(io(&path))
    }
}

/// Reads `dir/name`, checking it in order: listed in the manifest, present, a valid `.npy`,
/// float32 in C order, of shape `shape`, with the manifest's hash.
fn read_checked(
    dir: &Path,
    name: &str,
    shape: &[usize],
    manifest: &Manifest,
    bad: &dyn Fn(String) -> VggError,
) -> Result<ArrayD<f32>, VggError> {
    let path = dir.join(name);
    let expected_hash = manifest
        .files
        .get(name)
        .ok_or_else(|| bad(format!("no hash listed for {name}")))?;
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => VggError::MissingFile(path.clone()),
        _ => VggError::Io {
            path: path.clone(),
            source,
        },
    };
    let bad_npy = |reason: String| VggError::BadNpy {
        path: path.clone(),
        reason,
    };
    // A file from a stranger is sized up before it is read: the tensor the architecture
    // expects, plus at most a header's worth of bytes.
    let data_bytes = 4 * shape.iter().product::<usize>() as u64;
    let len = fs::metadata(&path).map_err(io)?.len();
    if len > data_bytes + MAX_NPY_HEADER {
        return Err(bad_npy(format!(
            "{len} bytes, more than the {data_bytes} bytes of a {shape:?} float32 array and its \
             header: not this layer's weights"
        )));
    }
    let bytes = fs::read(&path).map_err(io)?;
    check_npy_header(&bytes).map_err(bad_npy)?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad_npy(e.to_string()))?;
    let dtype = npy.dtype();
    let f4: npyz::TypeStr = "<f4".parse().expect("a valid type string");
    if dtype != npyz::DType::Plain(f4) {
        return Err(VggError::WrongDtype {
            path: path.clone(),
            found: dtype.descr(),
        });
    }
    if npy.order() != npyz::Order::C {
        return Err(bad_npy(
            "Fortran order is not supported; save in C order".into(),
        ));
    }
    let found = npy.shape().to_vec();
    let expected: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    if found != expected {
        return Err(VggError::WrongShape {
            path: path.clone(),
            found,
            expected,
        });
    }
    let data = npy
        .into_vec::<f32>()
        .map_err(|e| bad_npy(format!("truncated or unreadable data: {e}")))?;
    let actual = sha256_hex(&bytes);
    if &actual != expected_hash {
        return Err(VggError::HashMismatch {
            path,
            expected: expected_hash.clone(),
            actual,
        });
    }
    Ok(ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape checked above"))
}

/// Refuses a `.npy` whose header is not a plain dictionary literal before it reaches `npyz`,
/// whose header parser (pest grammar of Python literals) backtracks exponentially on nested
/// brackets: fuzzing found a 250-byte file that took over 10 s. A float32 array's header is
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (…), }` — printable ASCII, no square
/// brackets, nesting at most two deep — so anything else is refused here.
pub fn check_npy_header(bytes: &[u8]) -> Result<(), String> {
    let bad = |why: &str| Err(format!("not a plain .npy header: {why}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return bad("no .npy magic");
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return bad("unknown format version"),
    };
    let Some(header) = bytes.get(start..start.saturating_add(len)) else {
        return bad("the file ends inside the header");
    };
    let mut depth = 0usize;
    for &c in header {
        match c {
            b'[' | b']' => return bad("square brackets"),
            b'{' | b'(' => depth += 1,
            b'}' | b')' => depth = depth.saturating_sub(1),
            b' '..=b'~' | b'\n' => {}
            _ => return bad("a character outside printable ASCII"),
        }
        if depth > 2 {
            return bad("nested too deeply");
        }
    }
    Ok(())
}

/// The longest `.npy` header a weights file may have (format 1.0 allows 64 KiB).
const MAX_NPY_HEADER: u64 = 65_536 + 10;

/// A float32, C-order `.npy` file holding `a` (format version 1.0).
pub fn npy_bytes(a: &ArrayD<f32>) -> Vec<u8> {
    let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
    let mut out = Vec::new();
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut out)
        .begin_nd()
        .expect("writing to memory");
    writer.extend(a.iter().copied()).expect("writing to memory");
    writer.finish().expect("writing to memory");
    out
}
