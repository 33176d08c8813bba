//! Images in and out. Inside, an image is the optimisation variable: a 1×3×H×W `f32` array, RGB
//! in [0, 1] (not clamped while optimising).
//!
//! In: anything the `image` crate decodes — grayscale is expanded, alpha dropped, 16-bit and
//! float converted, CMYK JPEGs converted by the decoder — with the EXIF orientation applied.
//! Also `.npy` (float32 H×W×3, as written by [`save`]) for exact initial images.
//!
//! Out, by extension: `.png` and `.jpg` (clamped to [0, 1], 8-bit), `.npy` (the raw variable,
//! float32 H×W×3, not clamped). Every file is written to a temporary name in the same directory
//! and renamed into place, so a failed or interrupted write never leaves a half-written file.

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, Rgb32FImage};
use npyz::WriterBuilder;
use nst_tensor::ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Reading or writing an image failed.
#[derive(Debug, Error)]
pub enum ImageIoError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not an image this tool can decode.
    #[error("{path}: cannot decode image: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// An image whose decoding would need more memory than allowed.
    #[error(
        "{path}: a {width}×{height} image needs {need} bytes to decode, more than the {limit} \
         allowed (half the memory budget); raise --max-memory or use a smaller file"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its width, from its header.
        width: u32,
        /// Its height, from its header.
        height: u32,
        /// Bytes its decoding needs.
        need: u64,
        /// Bytes allowed.
        limit: u64,
    },
    /// A `.npy` image is not float32 H×W×3.
    #[error("{path}: {reason}")]
    BadNpy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An initial image does not have the content image's size.
    #[error("{path}: {reason}")]
    WrongSize {
        /// The file.
        path: PathBuf,
        /// The sizes involved.
        reason: String,
    },
    /// The output extension is not one of `.png`, `.jpg`/`.jpeg`, `.npy`.
    #[error("{path}: unsupported output format (use .png, .jpg or .npy)")]
    UnsupportedOutput {
        /// The file.
        path: PathBuf,
    },
    /// Encoding the output failed.
    #[error("{path}: cannot encode image: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What the encoder said.
        reason: String,
    },
}

/// What [`save`] writes, decided by the extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// 8-bit PNG, clamped.
    Png,
    /// 8-bit JPEG (quality 95), clamped.
    Jpeg,
    /// Raw float32 H×W×3, not clamped.
    Npy,
}

impl OutputFormat {
    /// The format for `path`'s extension (case-insensitive).
    pub fn from_path(path: &Path) -> Result<Self, ImageIoError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Ok(Self::Png),
            Some("jpg" | "jpeg") => Ok(Self::Jpeg),
            Some("npy") => Ok(Self::Npy),
            _ => Err(ImageIoError::UnsupportedOutput { path: path.into() }),
        }
    }
}

/// Reads an image file as RGB in [0, 1], with its EXIF orientation applied, using at most
/// `limit` bytes: the decoder runs under the `image` crate's allocation limit, and a header whose
/// size would need more (for the decoded pixels or their float32 RGB copy) is refused before
/// any pixel is decoded — a 74-byte PNG claiming 100000×100000 pixels is an error, not a 30 GB
/// allocation.
pub fn load(path: &Path, limit: u64) -> Result<Rgb32FImage, ImageIoError> {
    let (file, _) = open_regular(path)?;
    decode(std::io::BufReader::new(file), path, limit)
}

/// Opens `path` for reading, with its size, if it is a regular file (or a link to one). A
/// device such as `/dev/urandom` never ends — a decoder would read it forever, and reading it
/// whole would fill the memory — and a pipe cannot be read twice (the JPEG end check, then the
/// decoder), so both are refused here, before any reading.
fn open_regular(path: &Path) -> Result<(std::fs::File, u64), ImageIoError> {
    let io = |source| ImageIoError::Io {
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_file() {
        return Ok((file, meta.len()));
    }
    let what = if meta.is_dir() {
        "is a directory, not an image file"
    } else {
        "is not a regular file (a device or a pipe cannot be read as an image)"
    };
    Err(io(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        what,
    )))
}

/// [`load`] from any reader (`path` names it in errors): the one decoding path, also what the
/// fuzz targets drive with arbitrary bytes.
pub fn decode(
    mut reader: impl std::io::BufRead + std::io::Seek,
    path: &Path,
    limit: u64,
) -> Result<Rgb32FImage, ImageIoError> {
    let decode = |e: image::ImageError| ImageIoError::Decode {
        path: path.into(),
        reason: e.to_string(),
    };
    let io = |source| ImageIoError::Io {
        path: path.into(),
        source,
    };
    let start = reader.stream_position().map_err(io)?;
    if !jpeg_reaches_its_end(&mut reader).map_err(io)? {
        return Err(ImageIoError::Decode {
            path: path.into(),
            reason: "the JPEG data stops before its end-of-image marker: the file is truncated \
                     or damaged"
                .into(),
        });
    }
    reader.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
    let mut reader = image_reader(reader, path).map_err(io)?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(limit);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode)?;
    let (w, h) = decoder.dimensions();
    // The decoded pixels and their float32 RGB copy (12 bytes each).
    let pixels = (w as u64) * (h as u64);
    let need = decoder
        .total_bytes()
        .saturating_add(pixels.saturating_mul(12));
    if need > limit {
        return Err(ImageIoError::TooLarge {
            path: path.into(),
            width: w,
            height: h,
            need,
            limit,
        });
    }
    let orientation = decoder.orientation().map_err(decode)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode)?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(ImageIoError::Decode {
            path: path.into(),
            reason: "the image is empty".into(),
        });
    }
    Ok(img.to_rgb32f())
}

/// Whether a stream that starts like a JPEG (`FF D8`) reaches its end-of-image marker (`FF D9`);
/// `true` for anything else, which its own decoder judges. Reads the stream once, in constant
/// memory.
///
/// Why: the `image` crate's JPEG decoder accepts a file cut short (an interrupted download or
/// copy) and fills what is missing with grey, where every other format's decoder reports the
/// truncation; a style transfer of a half-grey photo is not what anyone asked for. (PIL refuses
/// such files too, unless told otherwise.)
///
/// How: walk the segments from the start-of-image marker. A marker is `FF` (repeatable as fill)
/// and a code; header segments carry a 2-byte length and are skipped whole (so an EXIF thumbnail's
/// own markers are never seen); a scan's entropy-coded data runs to the next marker, inside it
/// `FF 00` is an escaped `FF` and `FF D0`–`FF D7` restart markers, neither of which has a length.
/// The walk ends at the first end-of-image marker, so data appended after it is allowed.
fn jpeg_reaches_its_end(reader: impl std::io::BufRead) -> std::io::Result<bool> {
    let mut bytes = reader.bytes();
    let mut next = move || bytes.next().transpose();
    if next()? != Some(0xFF) || next()? != Some(0xD8) {
        return Ok(true);
    }
    loop {
        // Up to the next marker's first FF (scan data in between), then past fill bytes.
        loop {
            match next()? {
                None => return Ok(false),
                Some(0xFF) => break,
                Some(_) => {}
            }
        }
        let code = loop {
            match next()? {
                None => return Ok(false),
                Some(0xFF) => {}
                Some(code) => break code,
            }
        };
        match code {
            0xD9 => return Ok(true),
            // An escaped FF in scan data, TEM, restart markers: nothing to skip.
            0x00 | 0x01 | 0xD0..=0xD7 => {}
            _ => {
                let (Some(high), Some(low)) = (next()?, next()?) else {
                    return Ok(false);
                };
                // The length counts its own two bytes.
                for _ in 2..u16::from_be_bytes([high, low]) {
                    if next()?.is_none() {
                        return Ok(false);
                    }
                }
            }
        }
    }
}

/// A reader of the image in `reader`, its format chosen as both [`decode`] and [`dimensions`]
/// need: the extension of `path` first (TGA has no magic number), then the content, which wins
/// if it is recognised (a PNG named .jpg is read as the PNG it is).
fn image_reader<R: std::io::BufRead + std::io::Seek>(
    reader: R,
    path: &Path,
) -> std::io::Result<ImageReader<R>> {
    let mut reader = ImageReader::new(reader);
    if let Ok(format) = image::ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    reader.with_guessed_format()
}

/// An image file's width and height, read from its header without decoding the pixels (to plan
/// memory before anything large is allocated).
pub fn dimensions(path: &Path) -> Result<(u32, u32), ImageIoError> {
    let io = |source| ImageIoError::Io {
        path: path.into(),
        source,
    };
    let (file, _) = open_regular(path)?;
    image_reader(std::io::BufReader::new(file), path)
        .map_err(io)?
        .into_dimensions()
        .map_err(|e| ImageIoError::Decode {
            path: path.into(),
            reason: e.to_string(),
        })
}

/// The size [`resize_longer_side`] gives a `w×h` image for `target`.
pub fn longer_side_size((w, h): (u32, u32), target: u32) -> (u32, u32) {
    if w.max(h) == target {
        return (w, h);
    }
    let scale = target as f64 / w.max(h) as f64;
    let nw = ((w as f64 * scale).round() as u32).max(1);
    let nh = ((h as f64 * scale).round() as u32).max(1);
    (nw, nh)
}

/// Resizes so the longer side is `target` pixels (Lanczos-3), keeping the aspect ratio; an
/// image whose longer side already is `target` is returned as is, not resampled.
pub fn resize_longer_side(img: &Rgb32FImage, target: u32) -> Rgb32FImage {
    let (nw, nh) = longer_side_size(img.dimensions(), target);
    if (nw, nh) == img.dimensions() {
        return img.clone();
    }
    image::imageops::resize(img, nw, nh, FilterType::Lanczos3)
}

/// Resizes to exactly `w×h` (Lanczos-3), unless it already has that size.
pub fn resize_exact(img: &Rgb32FImage, w: u32, h: u32) -> Rgb32FImage {
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    image::imageops::resize(img, w, h, FilterType::Lanczos3)
}

/// The image as the optimisation variable, 1×3×H×W.
pub fn to_variable(img: &Rgb32FImage) -> ArrayD<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let hwc = ArrayD::from_shape_vec(IxDyn(&[h, w, 3]), img.as_raw().clone()).expect("RGB buffer");
    hwc_to_variable(hwc)
}

/// The 1×3×H×W variable resized to `w×h` by bicubic (Catmull-Rom) interpolation — how a
/// coarse-to-fine stage's result initialises the next, larger stage. The variable is never
/// clamped to [0, 1] while optimising, but the resampler clamps to it: values are mapped
/// affinely into [0, 1] and back, so only the cubic's overshoot beyond the image's own range is
/// clipped.
pub fn upsample_variable(x: &ArrayD<f32>, w: u32, h: u32) -> ArrayD<f32> {
    let (xh, xw, hwc) = variable_to_hwc(x);
    if (xw as u32, xh as u32) == (w, h) {
        return x.clone();
    }
    let lo = hwc.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = hwc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let unit: Vec<f32> = hwc.iter().map(|v| (v - lo) / span).collect();
    let img = Rgb32FImage::from_raw(xw as u32, xh as u32, unit).expect("H×W×3 values");
    let resized = image::imageops::resize(&img, w, h, FilterType::CatmullRom);
    to_variable(&resized).mapv(|v| v * span + lo)
}

/// An H×W×3 array as the 1×3×H×W variable.
fn hwc_to_variable(hwc: ArrayD<f32>) -> ArrayD<f32> {
    let (h, w) = (hwc.shape()[0], hwc.shape()[1]);
    hwc.permuted_axes(IxDyn(&[2, 0, 1]))
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[1, 3, h, w]))
        .expect("same element count")
}

/// The 1×3×H×W variable as an RGB image (values as they are, not clamped).
pub fn variable_to_image(x: &ArrayD<f32>) -> Rgb32FImage {
    let (h, w, hwc) = variable_to_hwc(x);
    Rgb32FImage::from_raw(w as u32, h as u32, hwc).expect("H×W×3 values")
}

/// The 1×3×H×W variable as H×W×3 row-major values.
fn variable_to_hwc(x: &ArrayD<f32>) -> (usize, usize, Vec<f32>) {
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let hwc = x
        .view()
        .into_shape_with_order(IxDyn(&[3, h, w]))
        .expect("1×3×H×W")
        .permuted_axes(IxDyn(&[1, 2, 0]));
    (h, w, hwc.iter().copied().collect())
}

/// Reads a float32 H×W×3 `.npy` image (as [`save`] writes) as the variable, refusing a file
/// larger than `limit` bytes or a header that claims more values than the file holds.
pub fn load_npy(path: &Path, limit: u64) -> Result<ArrayD<f32>, ImageIoError> {
    let bad = |reason: String| ImageIoError::BadNpy {
        path: path.into(),
        reason,
    };
    let io = |source| ImageIoError::Io {
        path: path.into(),
        source,
    };
    let (mut file, size) = open_regular(path)?;
    if size > limit {
        return Err(bad(format!(
            "the file has {size} bytes, more than the {limit} allowed (half the memory budget)"
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io)?;
    npy_image(&bytes, path)
}

/// A float32 H×W×3 `.npy` image from its bytes (`path` names it in errors), checking the
/// header's claim against the bytes present before anything is allocated for it; what
/// [`load_npy`] and the fuzz targets call.
pub fn npy_image(bytes: &[u8], path: &Path) -> Result<ArrayD<f32>, ImageIoError> {
    let bad = |reason: String| ImageIoError::BadNpy {
        path: path.into(),
        reason,
    };
    nst_vgg::check_npy_header(bytes).map_err(bad)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| bad(e.to_string()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if shape.len() != 3 || shape[2] != 3 || shape[0] == 0 || shape[1] == 0 {
        return Err(bad(format!("expected an H×W×3 image, got shape {shape:?}")));
    }
    // The header's claim against the bytes that are there, before anything is allocated for it.
    let values = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if values.is_none_or(|n| n.saturating_mul(4) > bytes.len()) {
        return Err(bad(format!(
            "the header claims shape {shape:?}, but the file holds only {} bytes",
            bytes.len()
        )));
    }
    let f4: npyz::TypeStr = "<f4".parse().expect("a valid type string");
    if npy.dtype() != npyz::DType::Plain(f4) || npy.order() != npyz::Order::C {
        return Err(bad(format!(
            "expected little-endian float32 ('<f4') in C order, got {}",
            npy.dtype().descr()
        )));
    }
    let data = npy.into_vec::<f32>().map_err(|e| bad(e.to_string()))?;
    if data.iter().any(|v| !v.is_finite()) {
        return Err(bad("contains NaN or infinite values".into()));
    }
    Ok(hwc_to_variable(
        ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape from header"),
    ))
}

/// Writes the variable `x` to `path`, in the format its extension names (see the module
/// documentation), atomically.
pub fn save(path: &Path, x: &ArrayD<f32>) -> Result<(), ImageIoError> {
    let format = OutputFormat::from_path(path)?;
    let (h, w, hwc) = variable_to_hwc(x);
    let bytes = match format {
        OutputFormat::Npy => {
            let mut out = Vec::new();
            let mut writer = npyz::WriteOptions::<f32>::new()
                .default_dtype()
                .shape(&[h as u64, w as u64, 3])
                .writer(&mut out)
                .begin_nd()
                .map_err(|source| ImageIoError::Io {
                    path: path.into(),
                    source,
                })?;
            writer.extend(hwc).map_err(|source| ImageIoError::Io {
                path: path.into(),
                source,
            })?;
            writer.finish().map_err(|source| ImageIoError::Io {
                path: path.into(),
                source,
            })?;
            out
        }
        OutputFormat::Png | OutputFormat::Jpeg => {
            let rgb8: Vec<u8> = hwc
                .iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            let img = image::RgbImage::from_raw(w as u32, h as u32, rgb8).expect("buffer size");
            let mut out = std::io::Cursor::new(Vec::new());
            let encoded = if format == OutputFormat::Png {
                img.write_to(&mut out, image::ImageFormat::Png)
            } else {
                img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
                    &mut out, 95,
                ))
            };
            encoded.map_err(|e| ImageIoError::Encode {
                path: path.into(),
                reason: e.to_string(),
            })?;
            out.into_inner()
        }
    };
    write_atomically(path, &bytes)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ImageIoError> {
    let tmp = temporary_path(path);
    let io = |source| ImageIoError::Io {
        path: path.into(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// The temporary file an output `path` is written to before being renamed into place:
/// `.NAME.partial-PID` beside it, with NAME shortened (at a character boundary) so that the
/// whole stays within the 255 bytes a file name may have — a legal 244-byte output name must
/// not fail at the very end of a run.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = format!(".partial-{}", std::process::id());
    let room = 255 - 1 - suffix.len();
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    path.with_file_name(format!(".{}{suffix}", &name[..end]))
}

/// Checks, before a run starts, that `path` can be written: its directory exists and accepts a
/// new file (a probe with the temporary name is created and removed), so that an unwritable
/// output is reported at once, not after the whole run.
pub fn check_writable(path: &Path) -> Result<(), ImageIoError> {
    let probe = temporary_path(path);
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|source| ImageIoError::Io {
            path: path.into(),
            source,
        })
}
