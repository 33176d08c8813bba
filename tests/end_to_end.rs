//! End-to-end tests of the `nst` binary on the real VGG16 weights: the PyTorch gradient-step
//! check, a short real run, determinism, interruption, and clear errors for bad input.
//!
//! They need the fetched weights (`python3 tools/fetch_weights.py`) and fail saying so if absent.

use nst_tensor::ndarray::ArrayD;
use nst_transfer::image_io;
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{arg, data, root, scratch, stderr, weights};

/// `nst transfer` of the demo Tübingen in the style of The Starry Night, plus `extra` options.
fn nst(extra: &[&str]) -> Output {
    let data = root().join("tests/data");
    nst_with(
        &data.join("tubingen.jpg"),
        &data.join("starry_night.jpg"),
        extra,
    )
}

/// `nst transfer --content content --style style` on 2 threads, plus `extra` options.
fn nst_with(content: &Path, style: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nst"))
        .args([
            "transfer",
            "--weights",
            weights().to_str().unwrap(),
            "--threads",
            "2",
        ])
        .args([
            "--content",
            content.to_str().unwrap(),
            "--style",
            style.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn norm(a: &ArrayD<f32>) -> f64 {
    a.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt()
}

/// One `--optimizer gd` step from a perturbed content image equals `x0 − lr·∇L(x0)` with `∇L`
/// from PyTorch (`tools/torch_reference.py`), to 1e-3 relative: the whole objective — network,
/// preprocessing, the three losses, their weights and the gradient — checked end to end.
#[test]
fn one_gd_step_matches_pytorch() {
    let fx = root().join("tests/fixtures/gd_step");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("reference.json")).unwrap()).unwrap();
    let num = |k: &str| reference[k].as_f64().unwrap().to_string();
    let out = scratch("gd").join("x1.npy");
    let o = Command::new(env!("CARGO_BIN_EXE_nst"))
        .args(["transfer", "--weights", weights().to_str().unwrap()])
        .args(["--content", fx.join("content.png").to_str().unwrap()])
        .args(["--style", fx.join("style.png").to_str().unwrap()])
        .args([
            "--init",
            fx.join("x0.npy").to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
        .args([
            "--size",
            "48",
            "--iters",
            "1",
            "--optimizer",
            "gd",
            "--lr",
            &num("lr"),
        ])
        .args([
            "--content-weight",
            &num("content_weight"),
            "--style-weight",
            &num("style_weight"),
        ])
        .args(["--tv-weight", &num("tv_weight"), "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let x0 = image_io::load_npy(&fx.join("x0.npy"), u64::MAX).unwrap();
    let x1 = image_io::load_npy(&out, u64::MAX).unwrap();
    let grad = image_io::load_npy(&fx.join("grad.npy"), u64::MAX).unwrap();
    let lr = reference["lr"].as_f64().unwrap() as f32;
    let ours = &x1 - &x0;
    let want = grad.mapv(|g| -lr * g);
    let rel = norm(&(&ours - &want)) / norm(&want);
    assert!(rel < 1e-3, "‖Δours − Δref‖/‖Δref‖ = {rel:.2e}");
}

/// A real run at 96 px: the style loss falls by more than 50× in 100 evaluations (measured 139×;
/// 77× after 40 and 104× after 60, as from the content image it trades against the content
/// loss), the log has one line per evaluation, and the output has the requested size.
#[test]
fn a_short_real_run_transfers_style() {
    let dir = scratch("run");
    let (out, log) = (dir.join("out.png"), dir.join("log.jsonl"));
    let o = nst(&[
        "--size",
        "96",
        "--iters",
        "100",
        "--output",
        out.to_str().unwrap(),
        "--log-json",
        log.to_str().unwrap(),
        "--save-every",
        "50",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 100);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["eval"].as_u64(), Some(i as u64 + 1));
        for key in ["total", "content", "style", "tv", "ms"] {
            assert!(
                l[key].as_f64().is_some_and(f64::is_finite),
                "line {i}: {key}"
            );
        }
    }
    let (first, last) = (
        lines[0]["style"].as_f64().unwrap(),
        lines[99]["style"].as_f64().unwrap(),
    );
    assert!(
        last < first / 50.0,
        "style loss only went from {first} to {last}"
    );
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (96, 72));
    assert!(dir.join("out_50.png").is_file() && dir.join("out_100.png").is_file());
}

/// Coarse to fine (`--scales 48,96`): the log shows stage 1 at 48×36 then stage 2 at 96×72,
/// evaluations numbered on across stages, the budget split 2:1; the second stage starts from the
/// first's result (its first loss is below a fresh start's: 2.4× measured), and the output has
/// full size.
#[test]
fn coarse_to_fine_runs_its_stages_in_order() {
    let dir = scratch("scales");
    let (out, log) = (dir.join("out.png"), dir.join("log.jsonl"));
    let run = |scales: &str| {
        let o = nst(&[
            "--size",
            "96",
            "--iters",
            "30",
            "--scales",
            scales,
            "--output",
            out.to_str().unwrap(),
            "--log-json",
            log.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let single = run("none");
    let staged = run("48,96");
    assert_eq!(staged.len(), 30);
    let stage_of = |l: &serde_json::Value| l["stage"].as_u64().unwrap();
    let first_fine = staged.iter().position(|l| stage_of(l) == 2).unwrap();
    assert_eq!(
        first_fine, 20,
        "two thirds of the budget at the coarse stage"
    );
    for (i, l) in staged.iter().enumerate() {
        assert_eq!(l["eval"].as_u64(), Some(i as u64 + 1));
        let size = if i < 20 { [48, 36] } else { [96, 72] };
        assert_eq!(l["size"], serde_json::json!(size), "line {i}");
    }
    let total = |l: &serde_json::Value| l["total"].as_f64().unwrap();
    assert!(
        total(&staged[first_fine]) < total(&single[0]) / 1.5,
        "the fine stage did not start from the coarse result: {} vs {}",
        total(&staged[first_fine]),
        total(&single[0])
    );
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (96, 72));
}

/// The same seed and thread count give identical bytes; another seed does not.
#[test]
fn runs_are_deterministic() {
    let dir = scratch("determinism");
    let run = |name: &str, seed: &str| {
        let out = dir.join(name);
        let o = nst(&[
            "--size",
            "48",
            "--iters",
            "6",
            "--init",
            "noise",
            "--seed",
            seed,
            "--output",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(out).unwrap()
    };
    let (a, b, c) = (run("a.npy", "3"), run("b.npy", "3"), run("c.npy", "4"));
    assert!(a == b, "two identical runs wrote different bytes");
    assert!(a != c, "different seeds wrote the same image");
}

/// Starts `nst transfer` (Tübingen × The Scream, `--iters 100000`, plus `extra`) writing
/// `out.png` and `log.jsonl` into `dir`, waits for `after_evals` logged evaluations, checks that
/// no output exists yet, sends `signal` (`-INT`, `-TERM`) a third of an evaluation's time later
/// (so that it lands inside the next evaluation, not in the milliseconds before it starts) and
/// returns the exit code.
#[cfg(unix)]
fn interrupted_run(dir: &Path, extra: &[&str], signal: &str, after_evals: usize) -> Option<i32> {
    let (out, log) = (dir.join("out.png"), dir.join("log.jsonl"));
    let data = root().join("tests/data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nst"))
        .args(["transfer", "--weights", weights().to_str().unwrap()])
        .args(["--content", data.join("tubingen.jpg").to_str().unwrap()])
        .args(["--style", data.join("the_scream.jpg").to_str().unwrap()])
        .args(["--iters", "100000"])
        .args(extra)
        .args(["--output", out.to_str().unwrap()])
        .args(["--log-json", log.to_str().unwrap(), "--quiet"])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    // The log as it was when it first held `after_evals` evaluations.
    let lines = loop {
        let lines = std::fs::read_to_string(&log).unwrap_or_default();
        if lines.lines().count() >= after_evals {
            break lines;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "the run made no progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    let ms = last["ms"]
        .as_f64()
        .expect("the log gives each evaluation's ms");
    std::thread::sleep(std::time::Duration::from_secs_f64(ms / 3e3));
    assert!(!out.exists(), "output written before the run ended");
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap().code()
}

/// Every evaluation in the JSON log at `log` belongs to the first (coarse) stage.
fn assert_stayed_in_the_first_stage(log: &Path) {
    let lines = std::fs::read_to_string(log).unwrap();
    assert!(
        lines.lines().all(|l| l.contains("\"stage\":1")),
        "the run left the coarse stage: {lines}"
    );
}

/// SIGINT stops the run and writes the best image so far.
#[cfg(unix)]
#[test]
fn an_interrupted_run_keeps_its_best_image() {
    // SIGINT (Ctrl-C) exits 130; SIGTERM (Slurm, Kubernetes, systemd) 143 — both after writing
    // the best image so far, and leaving no temporary file.
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let dir = scratch(&format!("interrupt{signal}"));
        let out = dir.join("out.png");
        let status = interrupted_run(&dir, &["--size", "64"], signal, 3);
        assert_eq!(status, Some(code), "{signal}");
        let img = image::open(&out).expect("the best image was written");
        assert_eq!(img.width(), 64);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), 2, "only the output and the log: {files:?}");
    }
}

/// SIGTERM stops the evaluation in progress within a layer instead of letting it finish: a
/// print's evaluation can take minutes, longer than the 30 s Slurm and Kubernetes leave before
/// SIGKILL. Tried on a tiled evaluation (`--tile 16`: 48 tiles per pass at 128×96, a few seconds)
/// and on a whole one long enough to be caught in the middle (1024×768, seconds). The log keeps
/// only the evaluation finished before the signal, and the best image is written.
#[cfg(unix)]
#[test]
fn sigterm_stops_an_evaluation_part_way() {
    for (name, extra, size) in [
        ("tiled", &["--size", "128", "--tile", "16"], (128, 96)),
        (
            "whole",
            &["--size", "1024", "--max-memory", "8G"],
            (1024, 768),
        ),
    ] {
        let dir = scratch(&format!("interrupt_{name}"));
        let status = interrupted_run(&dir, extra, "-TERM", 1);
        assert_eq!(status, Some(143), "{name}");
        let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
        assert_eq!(
            log.lines().count(),
            1,
            "{name}: the evaluation in progress ran to its end: {log}"
        );
        let img = image::open(dir.join("out.png")).expect("the best image was written");
        assert_eq!((img.width(), img.height()), size, "{name}");
    }
}

/// Interrupted in a coarse stage (`--scales 48,96`, stopped while still at 48 px), the run still
/// writes an output of the requested size, started from the coarse result the way the next stage
/// would have been, and exits 130.
#[cfg(unix)]
#[test]
fn an_interrupted_coarse_stage_still_writes_the_full_size() {
    let dir = scratch("interrupt_coarse");
    let status = interrupted_run(&dir, &["--size", "96", "--scales", "48,96"], "-INT", 3);
    assert_eq!(status, Some(130));
    assert_stayed_in_the_first_stage(&dir.join("log.jsonl"));
    let img = image::open(dir.join("out.png")).expect("the output was written");
    assert_eq!((img.width(), img.height()), (96, 72));
}

/// Bad input gets a clear message, exit code 1, no panic, and no output file.
#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = scratch("errors");
    let out = dir.join("out.png");
    let o_str = out.to_str().unwrap();
    let not_an_image = dir.join("text.jpg");
    std::fs::write(&not_an_image, "this is not a JPEG").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--content-layers", "relu4_9"],
            "unknown layer 'relu4_9'",
        ),
        (
            vec!["--style-layers", "relu1_1,conv5_4"],
            "valid layers: conv1_1, relu1_1",
        ),
        (vec!["--size", "8"], "too small"),
        (vec!["--style-blend", "0.5,0.5"], "2 weights for 1 --style"),
        (vec!["--iters", "0"], "--iters must be at least 1"),
        (vec!["--tv-weight=-1"], "--tv-weight must be"),
        (vec!["--init", "/nonexistent/x.png"], "/nonexistent/x.png"),
        (
            vec!["--style", not_an_image.to_str().unwrap()],
            "cannot decode image",
        ),
        (vec!["--weights", "/nonexistent"], "fetch_weights.py"),
        (vec!["--lr", "0.5"], "--lr has no effect with L-BFGS"),
        // Negative numbers parse as values, with or without '=' (then get the same message).
        (vec!["--tv-weight", "-1"], "--tv-weight must be"),
        (vec!["--content-weight", "-2.5"], "--content-weight must be"),
        (vec!["--scales", "100"], "more than a doubling"),
        (
            vec!["--style-layers", "relu1_1,relu2_1,relu1_1"],
            "--style-layers lists relu1_1 twice",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["--output", o_str];
        args.extend(extra.iter().copied());
        let o = match extra[0] {
            "--style" => nst_with(
                &root().join("tests/data/tubingen.jpg"),
                Path::new(extra[1]),
                &["--output", o_str],
            ),
            "--weights" => Command::new(env!("CARGO_BIN_EXE_nst"))
                .args([
                    "transfer",
                    "--content",
                    "a.png",
                    "--style",
                    "b.png",
                    "--output",
                    o_str,
                    "--weights",
                    extra[1],
                ])
                .output()
                .unwrap(),
            _ => nst(&args),
        };
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        assert!(
            err.contains(expected),
            "{extra:?}: expected '{expected}' in: {err}"
        );
        assert!(!err.contains("panicked"), "{extra:?} panicked: {err}");
        assert!(!out.exists(), "{extra:?} wrote an output");
    }

    // An output that is an existing directory is refused before the run, not at its end.
    let taken = dir.join("taken.png");
    std::fs::create_dir_all(&taken).unwrap();
    let o = nst(&["--output", taken.to_str().unwrap(), "--iters", "1000"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("taken.png: is a directory"), "{err}");
    assert!(!err.contains("eval "), "the run started: {err}");

    // An output that cannot be created is found before the run, in well under a second's work.
    let started = std::time::Instant::now();
    let o = nst(&["--output", "/proc/nst-out.png", "--iters", "1000"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("/proc/nst-out.png"), "{err}");
    assert!(
        started.elapsed().as_secs() < 30,
        "the run started before the check"
    );

    // A legal 244-byte UTF-8 name: its temporary name is shortened to fit 255 bytes.
    let long = dir.join(format!("{}.png", "é".repeat(120)));
    let o = nst(&[
        "--output",
        long.to_str().unwrap(),
        "--size",
        "32",
        "--iters",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(long.is_file());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".partial-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let o = nst(&["--output", dir.join("out.gif").to_str().unwrap()]);
    assert!(
        stderr(&o).contains("unsupported output format"),
        "{}",
        stderr(&o)
    );
}

/// Grayscale, RGBA and 16-bit inputs all become RGB and run.
#[test]
fn unusual_input_formats_are_accepted() {
    let dir = scratch("formats");
    let gray = dir.join("gray.png");
    image::GrayImage::from_fn(40, 30, |x, y| image::Luma([(x * 6 + y) as u8]))
        .save(&gray)
        .unwrap();
    let rgba = dir.join("rgba.png");
    image::RgbaImage::from_fn(40, 30, |x, y| {
        image::Rgba([x as u8 * 5, y as u8 * 7, 90, 10])
    })
    .save(&rgba)
    .unwrap();
    let deep = dir.join("deep.png");
    image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(40, 30, |x, y| {
        image::Rgb([x as u16 * 1500, y as u16 * 2000, 30000])
    })
    .save(&deep)
    .unwrap();
    // TGA has no magic number: it is recognised by its extension.
    let tga = dir.join("plain.tga");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 120]))
        .save(&tga)
        .unwrap();
    for input in [&gray, &rgba, &deep, &tga] {
        let out = dir.join("out.png");
        let o = nst_with(
            input,
            input,
            &[
                "--size",
                "40",
                "--iters",
                "2",
                "--output",
                out.to_str().unwrap(),
                "--quiet",
            ],
        );
        assert!(o.status.success(), "{}: {}", input.display(), stderr(&o));
        assert_eq!(image::open(&out).unwrap().width(), 40);
    }
}

/// `nst bench --json`: the processor it ran on, one row per network layer (and loss op kind)
/// whose times add up to the evaluation's within 15%, convolutions named with their algorithm,
/// effective GFLOP/s and task count, and the loss terms of the synthetic problem.
#[test]
fn bench_profiles_every_layer() {
    let o = Command::new(env!("CARGO_BIN_EXE_nst"))
        .args([
            "bench",
            "--size",
            "96x64",
            "--evals",
            "2",
            "--threads",
            "2",
            "--json",
        ])
        .args(["--weights", weights().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "nst bench failed: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["size"], serde_json::json!([96, 64]));
    assert_eq!(v["threads"], 2);
    let processor = v["processor"].as_str().unwrap_or_default();
    assert!(
        !processor.is_empty(),
        "no processor named: {}",
        v["processor"]
    );
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
        let name = info
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim());
        if let Some(name) = name {
            assert!(
                processor.starts_with(name),
                "{processor:?} does not name /proc/cpuinfo's {name:?}"
            );
        }
    }
    assert_eq!(v["transposed"], false, "a wide image runs as it is");
    let eval_ms = v["evaluation_ms"].as_f64().unwrap();
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers
        .iter()
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    // Every convolution is followed by its ReLU and fused with it (no raw conv output is asked
    // for by the default layers), so a row is named after both; a block's last one, whose ReLU
    // output is not asked for either, also with the max pooling after it.
    for want in [
        "conv1_1+relu1_1",
        "conv1_2+relu1_2+pool1",
        "conv4_2+relu4_2",
        "conv4_3+relu4_3+pool4",
        "conv5_1+relu5_1",
        "(gram)",
    ] {
        assert!(names.contains(&want), "no row for {want} in {names:?}");
    }
    assert!(!names.contains(&"pool1"), "pool1 ran on its own: {names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("conv5_2")),
        "the network ran past relu5_1: {names:?}"
    );
    let sum: f64 = layers
        .iter()
        .map(|l| l["forward_ms"].as_f64().unwrap() + l["backward_ms"].as_f64().unwrap())
        .sum();
    assert!(
        (sum - eval_ms).abs() <= 0.15 * eval_ms,
        "rows add up to {sum} ms, the evaluation took {eval_ms} ms"
    );
    let row = |name: &str| layers.iter().find(|l| l["layer"] == name).unwrap();
    assert_eq!(row("conv1_1+relu1_1")["algorithm"], "direct / direct");
    let conv1_2 = row("conv1_2+relu1_2+pool1");
    assert_eq!(
        conv1_2["algorithm"],
        "winograd F(4x4,3x3) / winograd F(4x4,3x3)"
    );
    assert!(conv1_2["gflops"].as_f64().unwrap() > 0.0);
    assert!(conv1_2["tasks"].as_u64().unwrap() >= 36);
    assert!(row("(gram)")["algorithm"].is_null());
    let loss = &v["loss"];
    for term in ["total", "content", "style"] {
        assert!(
            loss[term].as_f64().unwrap() > 0.0,
            "{term} loss is not positive: {loss}"
        );
    }
}

/// A tall image is evaluated transposed (as the wide one it is transposed, which the kernels
/// compute faster), unless `--upright` says not to; both give the same loss.
#[test]
fn bench_evaluates_a_tall_image_transposed_unless_upright() {
    let bench = |extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_nst"))
            .args(["bench", "--size", "48x80", "--evals", "1", "--json"])
            .args(extra)
            .args(["--weights", weights().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "nst bench {extra:?}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
        (
            v["transposed"].clone(),
            v["loss"]["total"].as_f64().unwrap(),
        )
    };
    let (transposed, total) = bench(&[]);
    let (upright, total_upright) = bench(&["--upright"]);
    assert_eq!((transposed, upright), (true.into(), false.into()));
    assert!(
        (total - total_upright).abs() <= 1e-5 * total_upright,
        "transposed {total} against upright {total_upright}"
    );
}

/// `NST_GEMM` picks the GEMM backend (`nst bench --json` reports which ran and the micro-kernels
/// it picked, and the two give the same loss up to rounding), a value that names none is
/// refused before any work, and without it the backend measured faster on this kind of
/// processor runs: the `gemm` crate with AVX-512F, `matrixmultiply` without.
#[test]
fn nst_gemm_picks_the_backend_and_refuses_a_typo() {
    let bench = |backend: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nst"));
        command
            .args(["bench", "--size", "40x32", "--evals", "1", "--json"])
            .args(["--weights", weights().to_str().unwrap()]);
        if backend.is_empty() {
            command.env_remove("NST_GEMM");
        } else {
            command.env("NST_GEMM", backend);
        }
        command.output().unwrap()
    };
    // The micro-kernels either library picks: the widest this processor has.
    #[cfg(target_arch = "x86_64")]
    let kernels = if std::is_x86_feature_detected!("avx512f") {
        "AVX-512F"
    } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        "AVX2+FMA"
    } else {
        "baseline"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let kernels = "baseline";
    let mut totals = Vec::new();
    for backend in ["matrixmultiply", "gemm"] {
        let o = bench(backend);
        assert!(o.status.success(), "NST_GEMM={backend}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
        assert_eq!(v["gemm"], backend);
        assert_eq!(v["gemm_kernels"], kernels);
        totals.push(v["loss"]["total"].as_f64().unwrap());
    }
    assert!(
        (totals[0] - totals[1]).abs() <= 1e-4 * totals[0],
        "the backends disagree: {totals:?}"
    );
    let o = bench("");
    assert!(o.status.success(), "NST_GEMM unset: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let default = if kernels == "AVX-512F" {
        "gemm"
    } else {
        "matrixmultiply"
    };
    assert_eq!(
        v["gemm"], default,
        "the default backend with {kernels} kernels"
    );
    let o = bench("openblas");
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    assert!(
        err.contains("NST_GEMM=\"openblas\"") && err.contains("matrixmultiply"),
        "{err}"
    );
}

/// `nst transfer` of `content` in the style of The Starry Night with `extra` options, under a
/// 1 GiB address-space limit: an attempt to allocate more aborts it instead of succeeding.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn nst_in_1gib(content: &Path, extra: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let data = root().join("tests/data");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nst"));
    cmd.args(["transfer", "--weights", weights().to_str().unwrap()])
        .args(["--content", content.to_str().unwrap()])
        .args(["--style", data.join("starry_night.jpg").to_str().unwrap()])
        .args(["--threads", "2"])
        .args(extra);
    // SAFETY: setrlimit is async-signal-safe and only touches the child's own limits.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd.output().unwrap()
}

/// A budget far too small is refused before anything large is allocated (the process runs
/// under a 1 GiB address-space limit, so a large allocation would abort it instead): exit 1, a
/// one-line message naming the largest size that fits, no output. `--dry-run` prints the plan
/// and writes nothing; a budget between the two caps the L-BFGS history and says so.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_memory_budget_is_checked_before_the_run() {
    let dir = scratch("memory_budget");
    let out = dir.join("out.png");
    let data = root().join("tests/data");
    let run = |extra: &[&str]| {
        let content = data.join("tubingen.jpg");
        nst_in_1gib(
            &content,
            &[&["--output", out.to_str().unwrap()], extra].concat(),
        )
    };

    let refused = run(&["--size", "4096", "--max-memory", "600M", "--quiet"]);
    let msg = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{msg}");
    assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    let largest: u32 = msg
        .split("--size ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no largest size in {msg:?}"));
    assert!((32..4096).contains(&largest), "{msg}");
    assert!(!out.exists());

    // The size it names fits the same budget (the plan says so without running).
    let fits = run(&[
        "--size",
        &largest.to_string(),
        "--max-memory",
        "600M",
        "--dry-run",
    ]);
    let plan = String::from_utf8_lossy(&fits.stdout);
    assert!(fits.status.success(), "{}", stderr(&fits));
    assert!(
        plan.starts_with("plan: ") && plan.contains("estimated peak"),
        "{plan}"
    );
    assert!(!out.exists(), "a dry run writes nothing");

    // Absurd sizes from flags are refused by the plan too, never allocated or wrapped around.
    for (flags, expected) in [
        (&["--style-scale", "1e30"][..], "no output size fits"),
        (&["--style-scale", "1000"][..], "largest output that fits"),
        (&["--size", "100000"][..], "largest output that fits"),
    ] {
        let o = run(&[flags, &["--quiet"][..]].concat());
        let msg = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{flags:?}: {msg}");
        assert!(
            msg.contains(expected) && msg.lines().count() == 1,
            "{flags:?}: {msg}"
        );
        assert!(!out.exists());
    }
    let huge_history = run(&["--history", "18446744073709551615", "--dry-run", "--quiet"]);
    assert!(huge_history.status.success(), "{}", stderr(&huge_history));

    // Coarse to fine: the full-size stage gets only its share of the evaluations, so it keeps
    // fewer L-BFGS pairs and the plan expects less memory than for one scale.
    let peak_mib = |extra: &[&str]| {
        let o = run(&[
            extra,
            &["--size", "1024", "--iters", "150", "--dry-run", "--quiet"][..],
        ]
        .concat());
        let plan = String::from_utf8_lossy(&o.stdout).into_owned();
        let text = plan
            .split("estimated peak ")
            .nth(1)
            .unwrap_or_else(|| panic!("{plan}"));
        let mut words = text.split(' ');
        let value: f64 = words.next().unwrap().parse().unwrap();
        value
            * if words.next() == Some("GiB") {
                1024.0
            } else {
                1.0
            }
    };
    let (single, staged) = (
        peak_mib(&["--scales", "none"]),
        peak_mib(&["--scales", "auto"]),
    );
    assert!(
        staged < single,
        "coarse to fine {staged} MiB vs one scale {single} MiB"
    );

    // Room for the evaluation but not for 100 L-BFGS pairs (0.9 GiB in half precision at
    // 1024×768): the history is shortened.
    let capped = run(&[
        "--size",
        "1024",
        "--iters",
        "300",
        "--max-memory",
        "2G",
        "--dry-run",
    ]);
    let (plan, msg) = (String::from_utf8_lossy(&capped.stdout), stderr(&capped));
    assert!(capped.status.success(), "{msg}");
    assert!(msg.contains("L-BFGS history capped at"), "{msg}");
    assert!(
        plan.contains("of a 2.0 GiB budget (--max-memory)"),
        "{plan}"
    );
    let history: usize = plan
        .split("L-BFGS history ")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no history in {plan:?}"));
    assert!((5..100).contains(&history), "{plan}");
}

/// `nst eval --grad-out` writes ∂total/∂X: at the three pixels where it is largest it equals a
/// central finite difference of the `--json` totals (to 3%, where a wrong gradient is off by
/// factors); `--tile 16` gives the same total; the JSON lists every style layer.
#[test]
fn eval_prints_the_objective_and_its_gradient() {
    let dir = scratch("eval");
    let data = root().join("tests/data");
    let (h, w) = (40, 48);
    let x = ArrayD::from_shape_fn(nst_tensor::ndarray::IxDyn(&[1, 3, h, w]), |d| {
        0.5 + 0.3 * ((d[1] * 7 + d[2] * 3 + d[3] * 5) as f32 * 0.37).sin()
    });
    let eval = |x: &ArrayD<f32>, extra: &[&str]| -> serde_json::Value {
        let path = dir.join("x.npy");
        image_io::save(&path, x).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_nst"))
            .args(["eval", "--weights", weights().to_str().unwrap()])
            .args(["--content", data.join("tubingen.jpg").to_str().unwrap()])
            .args(["--style", data.join("starry_night.jpg").to_str().unwrap()])
            .args([
                "--image",
                path.to_str().unwrap(),
                "--json",
                "--threads",
                "2",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let grad_path = dir.join("grad.npy");
    let base = eval(&x, &["--grad-out", grad_path.to_str().unwrap()]);
    let total = |v: &serde_json::Value| v["total"].as_f64().unwrap();
    assert_eq!(base["style_layers"].as_object().unwrap().len(), 5, "{base}");
    let tiled = eval(&x, &["--tile", "16"]);
    assert!(((total(&tiled) - total(&base)) / total(&base)).abs() < 1e-5);

    let grad = image_io::load_npy(&grad_path, u64::MAX).unwrap();
    assert_eq!(grad.shape(), x.shape());
    let mut order: Vec<usize> = (0..grad.len()).collect();
    let flat: Vec<f32> = grad.iter().copied().collect();
    order.sort_by(|&a, &b| flat[b].abs().total_cmp(&flat[a].abs()));
    let step = 1e-2f32;
    for &i in &order[..3] {
        let at = |delta: f32| {
            let mut y = x.clone();
            *y.iter_mut().nth(i).unwrap() += delta;
            total(&eval(&y, &[]))
        };
        let numeric = (at(step) - at(-step)) / (2.0 * step as f64);
        let analytic = flat[i] as f64;
        assert!(
            ((numeric - analytic) / analytic).abs() < 3e-2,
            "pixel {i}: finite difference {numeric:.4e}, gradient {analytic:.4e}"
        );
    }
}

/// `--threads` must be 1 to 1024 in every command: rayon would read 0 as "one per core", and
/// a typo of 100000 spent minutes starting threads before failing.
#[test]
fn thread_counts_out_of_range_are_refused_by_every_command() {
    let (content, style) = (data("tubingen.jpg"), data("starry_night.jpg"));
    let images = [
        "--content",
        arg(&content),
        "--style",
        arg(&style),
        "--weights",
    ];
    let w = weights();
    for (threads, expected) in [
        ("0", "--threads must be at least 1"),
        ("100000", "--threads 100000: at most 1024 worker threads"),
    ] {
        for command in ["transfer", "eval", "bench"] {
            let mut args = vec![command, "--threads", threads];
            match command {
                "transfer" => args.extend(images.iter().chain(&[arg(&w), "--output", "x.png"])),
                "eval" => args.extend(images.iter().chain(&[arg(&w), "--image", arg(&content)])),
                _ => args.extend(["--size", "64x64", "--weights", arg(&w)]),
            }
            let o = Command::new(env!("CARGO_BIN_EXE_nst"))
                .args(&args)
                .output()
                .unwrap();
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }
}

/// An image at which the objective overflows float32 (one value of 1e30) is refused with exit 1
/// and one line, and `--grad-out` writes nothing, instead of printing `NaN` (JSON `null`) and a
/// NaN gradient with exit 0.
#[test]
fn eval_refuses_an_image_where_the_objective_overflows() {
    let dir = scratch("eval_overflow");
    let mut x = ArrayD::from_elem(nst_tensor::ndarray::IxDyn(&[1, 3, 40, 48]), 0.5f32);
    x[[0, 1, 3, 3]] = 1e30;
    let (image, grad) = (dir.join("x.npy"), dir.join("grad.npy"));
    image_io::save(&image, &x).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nst"))
        .args(["eval", "--weights", arg(&weights())])
        .args(["--content", arg(&data("tubingen.jpg"))])
        .args(["--style", arg(&data("starry_night.jpg"))])
        .args(["--image", arg(&image), "--json", "--grad-out", arg(&grad)])
        .output()
        .unwrap();
    let msg = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.contains("not finite") && msg.contains("values reach 1.000e30 where"),
        "{msg}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!grad.exists(), "a NaN gradient was written");
}

/// A loss that overflows (`--content-weight 1e38`) stops the run with exit 1 and a one-line
/// message, keeping the best finite image (as an interrupt does, at the requested size even
/// from a coarse stage) instead of finishing "successfully" with an infinite loss.
#[test]
fn a_non_finite_loss_stops_the_run() {
    let dir = scratch("non_finite");
    let out = dir.join("out.png");
    let o = nst(&[
        "--size",
        "64",
        "--iters",
        "20",
        "--content-weight",
        "1e38",
        "--quiet",
        "--output",
        out.to_str().unwrap(),
    ]);
    let msg = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.contains("non-finite") && msg.contains("best finite image"),
        "{msg}"
    );
    assert_eq!(image::open(&out).unwrap().width(), 64);

    // Stopped in a coarse stage, the best image is still written at the requested size (made
    // the way the next stage would have started), not at the stage's.
    let log = dir.join("log.jsonl");
    let o = nst(&[
        "--size",
        "96",
        "--scales",
        "48,96",
        "--iters",
        "40",
        "--content-weight",
        "1e38",
        "--quiet",
        "--log-json",
        log.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    let msg = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(msg.contains("best finite image"), "{msg}");
    assert_stayed_in_the_first_stage(&log);
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (96, 72), "{msg}");
}

/// Weights are found from any directory: `$NST_WEIGHTS`, then `./weights`, then the per-user
/// data directory; with none, the error lists every place looked at and how to fetch.
#[test]
fn weights_are_found_from_anywhere() {
    let dir = scratch("find_weights");
    let data = root().join("tests/data");
    let run = |envs: &[(&str, &Path)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nst"));
        cmd.current_dir(&dir)
            .env_remove("NST_WEIGHTS")
            .env("HOME", &dir)
            .env_remove("XDG_DATA_HOME")
            .args(["transfer", "--dry-run", "--size", "64"])
            .args(["--content", data.join("tubingen.jpg").to_str().unwrap()])
            .args(["--style", data.join("starry_night.jpg").to_str().unwrap()])
            .args(["--output", dir.join("out.png").to_str().unwrap()]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let none = run(&[]);
    let msg = stderr(&none);
    assert_eq!(none.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("weights/vgg16") && msg.contains(".local/share/nst/weights"),
        "{msg}"
    );
    assert!(msg.contains("fetch_weights.py --user"), "{msg}");
    let weights_root = root().join("weights");
    let by_env = run(&[("NST_WEIGHTS", &weights_root)]);
    assert!(by_env.status.success(), "{}", stderr(&by_env));
    let xdg = dir.join("xdg");
    std::fs::create_dir_all(xdg.join("nst")).unwrap();
    std::os::unix::fs::symlink(&weights_root, xdg.join("nst/weights")).unwrap();
    let by_xdg = run(&[("XDG_DATA_HOME", &xdg)]);
    assert!(by_xdg.status.success(), "{}", stderr(&by_xdg));
    assert!(
        stderr(&by_xdg).contains("xdg/nst/weights/vgg16"),
        "{}",
        stderr(&by_xdg)
    );
}

/// The standard CRC-32 of PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Decoder bombs — tiny files whose headers claim huge images, for every decoder enabled (PNG,
/// PNM, GIF, BMP, JPEG, TIFF, QOI, TGA, WebP) — and a
/// `.npy` init claiming 2³²×2³²×3 values — are refused with exit 1 and one line, under a 1 GiB
/// address-space limit (so before any large allocation), writing nothing.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn decoder_bombs_are_refused_before_decoding() {
    let dir = scratch("bombs");
    let out = dir.join("out.png");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IDAT");
    png.extend(crc32(b"IDAT").to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IEND");
    png.extend(crc32(b"IEND").to_be_bytes());
    let pnm = b"P6\n100000 100000\n255\n".to_vec();
    let mut gif = b"GIF89a".to_vec();
    gif.extend(65_535u16.to_le_bytes());
    gif.extend(65_535u16.to_le_bytes());
    gif.extend([0, 0, 0, b',', 0, 0, 0, 0]);
    gif.extend(65_535u16.to_le_bytes());
    gif.extend(65_535u16.to_le_bytes());
    gif.extend([0, 8, 0, b';']);
    let mut bmp = b"BM".to_vec();
    bmp.extend(70u32.to_le_bytes());
    bmp.extend(0u32.to_le_bytes());
    bmp.extend(54u32.to_le_bytes());
    bmp.extend(40u32.to_le_bytes());
    bmp.extend(60_000i32.to_le_bytes());
    bmp.extend(60_000i32.to_le_bytes());
    bmp.extend(1u16.to_le_bytes());
    bmp.extend(24u16.to_le_bytes());
    bmp.extend([0u8; 24]);
    bmp.extend([0u8; 16]);
    // The other decoders: the fuzzing seeds (valid 8×6 images) with their size fields raised.
    let seed = |ext: &str| {
        std::fs::read(root().join(format!("fuzz/seeds/image_decode/tiny.{ext}"))).unwrap()
    };
    let mut jpeg = seed("jpg");
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFF; 4]); // height, width: 65535 each
    let mut tiff = seed("tiff");
    let ifd = u32::from_le_bytes(tiff[4..8].try_into().unwrap()) as usize;
    let entries = u16::from_le_bytes(tiff[ifd..ifd + 2].try_into().unwrap()) as usize;
    for e in 0..entries {
        let at = ifd + 2 + 12 * e;
        let tag = u16::from_le_bytes(tiff[at..at + 2].try_into().unwrap());
        if tag == 256 || tag == 257 {
            // ImageWidth, ImageLength: 65535 whether stored as SHORT or LONG.
            tiff[at + 8..at + 12].copy_from_slice(&[0xFF, 0xFF, 0, 0]);
        }
    }
    let mut qoi = seed("qoi");
    // 20000×20000: the largest QOI the decoder accepts (400 million pixels).
    qoi[4..12].copy_from_slice(&[0, 0, 0x4E, 0x20, 0, 0, 0x4E, 0x20]);
    let mut webp = seed("webp");
    let vp8 = webp
        .windows(3)
        .position(|w| w == [0x9D, 0x01, 0x2A])
        .expect("a VP8 frame");
    webp[vp8 + 3..vp8 + 7].copy_from_slice(&[0xFF, 0x3F, 0xFF, 0x3F]); // 16383×16383
    let mut tga = seed("tga");
    tga[12..16].copy_from_slice(&[0xFF; 4]);
    let content = root().join("tests/data/tubingen.jpg");
    for (name, bytes) in [
        ("bomb.png", png),
        ("bomb.ppm", pnm),
        ("bomb.gif", gif),
        ("bomb.bmp", bmp),
        ("bomb.jpg", jpeg),
        ("bomb.tiff", tiff),
        ("bomb.qoi", qoi),
        ("bomb.tga", tga),
        ("bomb.webp", webp),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let o = nst_in_1gib(
            &path,
            &[
                "--output",
                out.to_str().unwrap(),
                "--size",
                "64",
                "--quiet",
                "--max-memory",
                "1G",
            ],
        );
        let msg = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {msg}");
        assert_eq!(msg.lines().count(), 1, "{name}: {msg}");
        // TIFF's decoder refuses strip sizes that disagree with the raised size by itself;
        // every other bomb reaches the limit check.
        let expected = if name == "bomb.tiff" {
            "inconsistent sizes"
        } else {
            "needs"
        };
        assert!(
            msg.contains(name) && msg.contains(expected),
            "{name}: {msg}"
        );
        assert!(!out.exists(), "{name} wrote an output");
    }
    // A .npy init whose header claims 2³²×2³²×3 float32 values.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 3), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + header.len() + 1) % 64;
    let full = format!("{header}{}\n", " ".repeat(pad));
    npy.extend((full.len() as u16).to_le_bytes());
    npy.extend(full.as_bytes());
    npy.extend([0u8; 12]);
    let init = dir.join("init.npy");
    std::fs::write(&init, &npy).unwrap();
    let o = nst_in_1gib(
        &content,
        &[
            "--output",
            out.to_str().unwrap(),
            "--size",
            "64",
            "--quiet",
            "--init",
            init.to_str().unwrap(),
        ],
    );
    let msg = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("header claims") && !msg.contains("panicked"),
        "{msg}"
    );
    assert!(!out.exists());
}

/// With stderr not a terminal (as here), progress comes as plain lines every `--print-every`
/// evaluations, after a header that echoes every setting shaping the result; `--quiet` prints
/// nothing at all.
#[test]
fn progress_is_plain_lines_when_stderr_is_not_a_terminal() {
    let dir = scratch("progress");
    let out = dir.join("out.png");
    let o = nst(&[
        "--size",
        "48",
        "--iters",
        "6",
        "--print-every",
        "2",
        "--output",
        out.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let evals: Vec<&str> = err.lines().filter(|l| l.starts_with("eval ")).collect();
    assert_eq!(evals.len(), 3, "{err}");
    assert!(
        evals[0].starts_with("eval 2/6: loss") && evals[0].contains("ETA"),
        "{err}"
    );
    assert!(
        err.contains("styles: starry_night.jpg ×1 at scale 1; init content"),
        "{err}"
    );
    let quiet = nst(&[
        "--size",
        "48",
        "--iters",
        "6",
        "--print-every",
        "2",
        "--quiet",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        quiet.status.success() && quiet.stderr.is_empty(),
        "{}",
        stderr(&quiet)
    );
}

/// `--precondition` reaches L-BFGS: the classic method's first trial step is `1/‖g‖₁`, tiny (the
/// second evaluation's loss within half a percent of the first's here), the multiscale one moves
/// the most changed pixel by ½ (a far larger change of the loss), and both runs go downhill.
#[test]
fn the_preconditioner_option_reaches_lbfgs() {
    let dir = scratch("precondition");
    let run = |precondition: &str| -> Vec<f64> {
        let log = dir.join(format!("{precondition}.jsonl"));
        let o = nst(&[
            "--size",
            "48",
            "--iters",
            "8",
            "--precondition",
            precondition,
            "--log-json",
            log.to_str().unwrap(),
            "--output",
            dir.join(format!("{precondition}.npy")).to_str().unwrap(),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["total"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    let (classic, multiscale) = (run("none"), run("multiscale"));
    for (name, losses) in [("none", &classic), ("multiscale", &multiscale)] {
        let best = losses.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(best < 0.9 * losses[0], "{name}: {losses:?}");
    }
    let change = |l: &[f64]| (l[1] - l[0]).abs() / l[0];
    assert!(
        change(&multiscale) > 10.0 * change(&classic),
        "first steps: classic {classic:?}, multiscale {multiscale:?}"
    );
}
