//! Image input and output: orientation, formats, the raw `.npy` round trip, atomic writes.

use image::{Rgb, RgbImage};
use nst_tensor::ndarray::{ArrayD, IxDyn};
use nst_transfer::image_io::{self, ImageIoError};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("image_io")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A JPEG with an EXIF APP1 segment saying "rotate 90° clockwise to display" (orientation 6).
fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    // TIFF header (little endian) + one IFD entry: tag 0x0112 (Orientation), SHORT, count 1.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend(1u16.to_le_bytes());
    tiff.extend(0x0112u16.to_le_bytes());
    tiff.extend(3u16.to_le_bytes());
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(orientation.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let dir = scratch("exif");
    // 8 wide, 4 tall; the left half red, the right half blue.
    let img = RgbImage::from_fn(8, 4, |x, _| {
        if x < 4 {
            Rgb([250, 0, 0])
        } else {
            Rgb([0, 0, 250])
        }
    });
    let path = dir.join("rotated.jpg");
    std::fs::write(&path, jpeg_with_orientation(&img, 6)).unwrap();
    let loaded = image_io::load(&path, u64::MAX).unwrap();
    // Rotated 90° clockwise: 4 wide, 8 tall, red on top.
    assert_eq!(loaded.dimensions(), (4, 8));
    let top = loaded.get_pixel(2, 1);
    let bottom = loaded.get_pixel(2, 6);
    assert!(top[0] > 0.8 && top[2] < 0.2, "top is {top:?}");
    assert!(bottom[2] > 0.8 && bottom[0] < 0.2, "bottom is {bottom:?}");
}

#[test]
fn npy_round_trip_is_exact_and_unclamped() {
    let dir = scratch("npy");
    let x = nst_tensor::ndarray::ArrayD::from_shape_fn(
        nst_tensor::ndarray::IxDyn(&[1, 3, 5, 7]),
        |d| (d[1] * 100 + d[2] * 10 + d[3]) as f32 / 50.0 - 1.5,
    );
    let path = dir.join("x.npy");
    image_io::save(&path, &x).unwrap();
    assert_eq!(image_io::load_npy(&path, u64::MAX).unwrap(), x);
    // 8-bit outputs are clamped to [0, 1].
    let png = dir.join("x.png");
    image_io::save(&png, &x).unwrap();
    let back = image::open(&png).unwrap().to_rgb8();
    assert_eq!((back.width(), back.height()), (7, 5));
    assert_eq!(back.get_pixel(0, 0)[0], 0); // −1.5 → 0
    assert_eq!(back.get_pixel(6, 4)[2], 255); // 246/50 − 1.5 > 1 → 255
}

#[test]
fn resizing_keeps_an_image_already_at_size() {
    let img =
        image::Rgb32FImage::from_fn(48, 30, |x, y| Rgb([x as f32 / 48.0, y as f32 / 30.0, 0.5]));
    assert_eq!(image_io::resize_longer_side(&img, 48), img);
    let small = image_io::resize_longer_side(&img, 24);
    assert_eq!(small.dimensions(), (24, 15));
}

#[test]
fn bad_files_are_errors_not_panics() {
    let dir = scratch("bad");
    let junk = dir.join("junk.png");
    std::fs::write(&junk, b"not a png").unwrap();
    assert!(matches!(
        image_io::load(&junk, u64::MAX),
        Err(ImageIoError::Decode { .. })
    ));
    assert!(matches!(
        image_io::load(&dir.join("missing.png"), u64::MAX),
        Err(ImageIoError::Io { .. })
    ));
    let npy = dir.join("bad.npy");
    std::fs::write(&npy, b"\x93NUMPY garbage").unwrap();
    assert!(matches!(
        image_io::load_npy(&npy, u64::MAX),
        Err(ImageIoError::BadNpy { .. })
    ));
    let x = nst_tensor::ndarray::ArrayD::zeros(nst_tensor::ndarray::IxDyn(&[1, 3, 2, 2]));
    assert!(matches!(
        image_io::save(&dir.join("x.gif"), &x),
        Err(ImageIoError::UnsupportedOutput { .. })
    ));
    // A write into a missing directory fails and leaves no temporary file behind.
    assert!(image_io::save(&dir.join("nowhere/x.png"), &x).is_err());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
}

/// A JPEG cut short is an error naming the truncation — the JPEG decoder alone would fill the
/// missing part with grey — while complete files decode: with an EXIF segment (whose bytes are
/// skipped, not scanned), with data appended after the end-of-image marker, and the demo photo.
#[test]
fn a_truncated_jpeg_is_refused() {
    let dir = scratch("truncated");
    let img = RgbImage::from_fn(40, 30, |x, y| Rgb([(x * 6) as u8, (y * 8) as u8, 90]));
    let whole = jpeg_with_orientation(&img, 1);
    let demo = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/tubingen.jpg"),
    )
    .unwrap();
    let mut appended = whole.clone();
    appended.extend([0xFF, 0xDA, 0x00, 0x08, 0xFF, 0x12, 0x34]);
    for (name, bytes) in [("whole", &whole), ("appended", &appended), ("demo", &demo)] {
        let path = dir.join(format!("{name}.jpg"));
        std::fs::write(&path, bytes).unwrap();
        let loaded = image_io::load(&path, u64::MAX);
        assert!(loaded.is_ok(), "{name}: {:?}", loaded.err());
    }
    for (name, bytes) in [
        ("two thirds", &whole[..whole.len() * 2 / 3]),
        ("all but the end marker", &whole[..whole.len() - 2]),
        ("half the demo", &demo[..demo.len() / 2]),
    ] {
        let path = dir.join("cut.jpg");
        std::fs::write(&path, bytes).unwrap();
        match image_io::load(&path, u64::MAX) {
            Err(ImageIoError::Decode { reason, .. }) => {
                assert!(reason.contains("truncated"), "{name}: {reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// A CMYK JPEG (made by PIL: left half red, right half blue) decodes to RGB.
#[test]
fn cmyk_jpeg_becomes_rgb() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/images/cmyk.jpg");
    let img = image_io::load(&path, u64::MAX).unwrap();
    assert_eq!(img.dimensions(), (16, 12));
    let (left, right) = (img.get_pixel(2, 6), img.get_pixel(13, 6));
    assert!(left[0] > 0.6 && left[2] < 0.3, "left is {left:?}");
    assert!(right[2] > 0.6 && right[0] < 0.3, "right is {right:?}");
}

/// Fuzzing found that a 250-byte `.npy` whose header nests `[` brackets sends npyz's header
/// parser into exponential backtracking (over 10 s); such headers are refused before parsing.
#[test]
fn npy_headers_with_nested_brackets_are_refused_before_parsing() {
    let bytes = include_bytes!("fuzz_findings/npy_nested_brackets.npy");
    let err = image_io::npy_image(bytes, std::path::Path::new("x.npy")).unwrap_err();
    assert!(err.to_string().contains("square brackets"), "{err}");
    // A plain header still parses.
    let x = ArrayD::from_shape_fn(IxDyn(&[1, 3, 2, 2]), |d| d[1] as f32 * 0.25);
    let dir = std::env::temp_dir().join(format!("nst-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("plain.npy");
    image_io::save(&path, &x).unwrap();
    assert_eq!(image_io::load_npy(&path, u64::MAX).unwrap(), x);
}

/// What is not a regular file is refused before a byte is read: `/dev/urandom` named `.jpg` or
/// `.npy` never ends (the decoder would read it forever; the `.npy` reader would fill the
/// memory) and `/dev/zero` likewise; a directory says so.
#[cfg(unix)]
#[test]
fn devices_and_directories_are_refused_before_reading() {
    let dir = scratch("devices");
    let link = |name: &str, target: &str| {
        let path = dir.join(name);
        std::os::unix::fs::symlink(target, &path).unwrap();
        path
    };
    let (jpg, png, npy) = (
        link("random.jpg", "/dev/urandom"),
        link("zero.png", "/dev/zero"),
        link("zero.npy", "/dev/zero"),
    );
    let limit = 1 << 30;
    let messages = [
        image_io::load(&jpg, limit).map(|_| ()),
        image_io::load(&png, limit).map(|_| ()),
        image_io::dimensions(&jpg).map(|_| ()),
        image_io::load_npy(&npy, limit).map(|_| ()),
    ]
    .map(|r| r.expect_err("a device was read as an image").to_string());
    for msg in &messages {
        assert!(msg.contains("is not a regular file"), "{msg}");
    }
    let msg = image_io::load(&dir, limit).unwrap_err().to_string();
    assert!(msg.contains("is a directory"), "{msg}");
}
