//! The memory budget's size parser and byte formatting (the estimate itself is checked end to
//! end against the real network in `tests/end_to_end.rs`, and against measured peaks in
//! BENCHMARKS.md).

use nst_transfer::memory::{format_bytes, parse_bytes};

#[test]
fn sizes_parse_with_binary_units() {
    assert_eq!(parse_bytes("6G"), Ok(6 << 30));
    assert_eq!(parse_bytes("512M"), Ok(512 << 20));
    assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
    assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
    assert_eq!(parse_bytes("64k"), Ok(64 << 10));
    assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
    assert_eq!(parse_bytes(" 2T "), Ok(2 << 40));
}

#[test]
fn bad_sizes_are_refused_with_the_expected_form() {
    for bad in ["", "G", "6X", "-1G", "0", "nan", "inf", "1e30", "6 G B x"] {
        let err = parse_bytes(bad).expect_err(bad);
        assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
    }
}

#[test]
fn bytes_format_for_people() {
    assert_eq!(format_bytes(734 << 20), "734 MiB");
    assert_eq!(format_bytes(3 << 29), "1.5 GiB");
    assert_eq!(format_bytes(1 << 10), "1 KiB");
    assert_eq!(format_bytes(100), "100 B");
}
