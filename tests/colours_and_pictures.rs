//! End-to-end tests of colour preservation (`--preserve-colors`) and the pictures of a run
//! (`--progress-grid`, `--plot`, `nst plot`), on the real VGG16 weights.

mod common;
use common::{arg, data, scratch, stderr, weights};
use nst_transfer::color::rgb_to_yiq;
use nst_transfer::image_io;
use std::path::Path;
use std::process::{Command, Output};

/// `nst transfer` of Tübingen in the style of The Starry Night at 64 px, plus `extra`.
fn transfer(extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nst"))
        .args(["transfer", "--weights", arg(&weights()), "--threads", "2"])
        .args(["--content", arg(&data("tubingen.jpg"))])
        .args(["--style", arg(&data("starry_night.jpg"))])
        .args(["--size", "64", "--quiet"])
        .args(extra)
        .output()
        .unwrap()
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// The content at the output's size, as the run computes it.
fn content_at(size: u32) -> nst_tensor::ndarray::ArrayD<f32> {
    let img = image_io::load(&data("tubingen.jpg"), u64::MAX).unwrap();
    image_io::to_variable(&image_io::resize_longer_side(&img, size))
}

fn pixel(x: &nst_tensor::ndarray::ArrayD<f32>, i: usize, j: usize) -> [f32; 3] {
    [0, 1, 2].map(|c| x[[0, c, i, j]])
}

/// Luminance-only transfer: the output's chrominance (YIQ's I and Q) is the content's, up to
/// 8-bit rounding, wherever no channel was clipped to 0 or 255; and its luminance is not the
/// content's (the style was transferred).
#[test]
fn luminance_transfer_keeps_the_content_chrominance() {
    let dir = scratch("colours-luminance");
    let out = dir.join("out.png");
    ok(transfer(&[
        "--iters",
        "8",
        "--preserve-colors",
        "luminance",
        "--output",
        arg(&out),
    ]));
    let written = image_io::to_variable(&image_io::load(&out, u64::MAX).unwrap());
    let content = content_at(64);
    assert_eq!(written.shape(), content.shape());
    let (h, w) = (content.shape()[2], content.shape()[3]);
    // One 8-bit step per channel moves I or Q by at most (0.596 + 0.274 + 0.321) / 2 / 255.
    let rounding = 1.2 / 2.0 / 255.0 + 1e-4;
    let (mut checked, mut luminance_moved) = (0, 0.0f64);
    for i in 0..h {
        for j in 0..w {
            let o = pixel(&written, i, j);
            if o.iter().any(|&v| v <= 0.0 || v >= 1.0) {
                continue;
            }
            let (yo, yc) = (rgb_to_yiq(o), rgb_to_yiq(pixel(&content, i, j)));
            assert!(
                (yo[1] - yc[1]).abs() <= rounding && (yo[2] - yc[2]).abs() <= rounding,
                "pixel ({i}, {j}): IQ {:?} vs the content's {:?}",
                &yo[1..],
                &yc[1..]
            );
            luminance_moved += (yo[0] - yc[0]).abs() as f64;
            checked += 1;
        }
    }
    assert!(checked > h * w / 2, "only {checked} unclipped pixels");
    assert!(
        luminance_moved / checked as f64 > 0.01,
        "the luminance is the content's: nothing was transferred"
    );
}

/// `--original-colors` is `--preserve-colors post` (same bytes); `histogram` changes the result
/// (the style's colours were matched); combining `--original-colors` with another setting is
/// refused.
#[test]
fn colour_settings_are_distinct_and_original_colors_is_post() {
    let dir = scratch("colours-settings");
    let run = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec!["--iters", "4", "--output", arg(&out)];
        args.extend_from_slice(extra);
        ok(transfer(&args));
        std::fs::read(&out).unwrap()
    };
    let post = run("post.png", &["--preserve-colors", "post"]);
    let short = run("short.png", &["--original-colors"]);
    let none = run("none.png", &[]);
    let histogram = run("histogram.png", &["--preserve-colors", "histogram"]);
    assert!(
        post == short,
        "--original-colors differs from --preserve-colors post"
    );
    assert!(post != none && histogram != none && histogram != post);

    let o = transfer(&[
        "--original-colors",
        "--preserve-colors",
        "histogram",
        "--output",
        arg(&dir.join("x.png")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--original-colors"), "{}", stderr(&o));
    assert!(!dir.join("x.png").exists());
}

/// The contact sheet has R×C cells of the output's aspect; its first cell is the initial image
/// (the content) and its last the output.
#[test]
fn the_progress_grid_shows_the_run_from_start_to_output() {
    let dir = scratch("progress-grid");
    let (out, grid) = (dir.join("out.png"), dir.join("grid.png"));
    ok(transfer(&[
        "--iters",
        "10",
        "--output",
        arg(&out),
        "--progress-grid",
        arg(&grid),
        "--grid",
        "2x3",
    ]));
    let sheet = image_io::to_variable(&image_io::load(&grid, u64::MAX).unwrap());
    // Cells of 256×192 (Tübingen is 4:3), 6-px gutters.
    let (cw, ch, gap) = (256, 192, 6);
    assert_eq!(sheet.shape()[3], 3 * cw + 4 * gap);
    assert_eq!(sheet.shape()[2], 2 * ch + 3 * gap);
    // Compare a cell's lower half (below the label) with an image at the run's size (64 px)
    // scaled to the cell.
    let cell_mean_error = |row: usize, col: usize, expected: &Path| {
        let img = image_io::resize_longer_side(&image_io::load(expected, u64::MAX).unwrap(), 64);
        let small = image_io::to_variable(&image_io::resize_exact(&img, cw as u32, ch as u32));
        let (y0, x0) = (gap + row * (ch + gap), gap + col * (cw + gap));
        let mut err = 0.0f64;
        for i in ch / 2..ch {
            for j in 0..cw {
                for c in 0..3 {
                    err += (sheet[[0, c, y0 + i, x0 + j]] - small[[0, c, i, j]]).abs() as f64;
                }
            }
        }
        err / (3 * cw * ch / 2) as f64
    };
    let first_vs_content = cell_mean_error(0, 0, &data("tubingen.jpg"));
    let last_vs_output = cell_mean_error(1, 2, &out);
    let first_vs_output = cell_mean_error(0, 0, &out);
    assert!(
        first_vs_content < 0.02,
        "first cell vs content: {first_vs_content}"
    );
    assert!(
        last_vs_output < 0.02,
        "last cell vs output: {last_vs_output}"
    );
    assert!(
        first_vs_output > 2.0 * first_vs_content,
        "the cells do not differ"
    );
}

/// `--plot` draws the run's curves; `nst plot` draws the same chart, byte for byte, from the
/// run's `--log-json`; a broken log is a clear error naming the line.
#[test]
fn plots_come_from_the_run_and_from_its_log() {
    let dir = scratch("plot");
    let (out, svg, log) = (
        dir.join("out.png"),
        dir.join("run.svg"),
        dir.join("log.jsonl"),
    );
    ok(transfer(&[
        "--iters",
        "12",
        "--scales",
        "32,64",
        "--output",
        arg(&out),
        "--plot",
        arg(&svg),
        "--log-json",
        arg(&log),
    ]));
    let drawn = std::fs::read_to_string(&svg).unwrap();
    for text in ["<svg", "total", "content Lc", "style Ls", "stage 2 (64×48)"] {
        assert!(drawn.contains(text), "the chart lacks {text:?}");
    }
    let again = dir.join("again.svg");
    let nst_plot = |log: &Path, svg: &Path| {
        Command::new(env!("CARGO_BIN_EXE_nst"))
            .args(["plot", arg(log), arg(svg)])
            .output()
            .unwrap()
    };
    ok(nst_plot(&log, &again));
    assert!(
        std::fs::read_to_string(&again).unwrap() == drawn,
        "nst plot drew another chart"
    );

    let broken = dir.join("broken.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"eval\": 13, \"total\": \"lots\"}\n");
    std::fs::write(&broken, text).unwrap();
    let o = nst_plot(&broken, &dir.join("broken.svg"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("line 13"), "{}", stderr(&o));
    assert!(!dir.join("broken.svg").exists());

    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let o = nst_plot(&empty, &dir.join("empty.svg"));
    assert_eq!(o.status.code(), Some(1));
    let msg = stderr(&o);
    assert!(msg.contains("empty.jsonl: no evaluations to plot"), "{msg}");
    assert!(!dir.join("empty.svg").exists());
}
