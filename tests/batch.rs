//! End-to-end tests of `nst batch` on the real VGG16 weights: shards as separate processes
//! (by option and by the Slurm and Kubernetes environment), resuming, a broken style among
//! good ones, and outputs identical to `nst transfer`'s.

mod common;
use common::{arg, data, scratch, stderr, weights};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The settings of every batch here.
const RUN: [&str; 4] = ["--threads", "2", "--seed", "1"];
/// Small and short jobs.
const SHORT: [&str; 4] = ["--size", "48", "--iters", "3"];

/// `nst batch` over `contents` × `styles` into `out`, with `extra` options and `env`.
fn batch_cmd(contents: &[PathBuf], styles: &[PathBuf], out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nst"));
    cmd.args(["batch", "--weights", arg(&weights()), "--out-dir", arg(out)])
        .args(RUN)
        .args(if extra.contains(&"--size") {
            &[][..]
        } else {
            &SHORT[..]
        })
        .arg("--content")
        .args(contents)
        .arg("--style")
        .args(styles)
        .args(extra)
        // No scheduler around unless a test says so.
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .env_remove("SLURM_ARRAY_TASK_MIN")
        .env_remove("JOB_COMPLETION_INDEX");
    cmd
}

/// The demo folder's four images as contents, two as styles: 8 jobs.
fn inputs(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let contents = dir.join("contents");
    std::fs::create_dir_all(&contents).unwrap();
    for name in [
        "tubingen.jpg",
        "shipwreck.jpg",
        "the_scream.jpg",
        "starry_night.jpg",
    ] {
        std::fs::copy(data(name), contents.join(name)).unwrap();
    }
    (
        vec![contents],
        vec![data("starry_night.jpg"), data("the_scream.jpg")],
    )
}

/// The lines of `DIR/batch.jsonl`, the log of an unsharded batch.
fn log_lines(dir: &Path) -> Vec<Value> {
    lines_of(&dir.join("batch.jsonl"))
}

/// The lines of a JSON-lines file (none if it does not exist).
fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The `(job, status)` pairs of log lines.
fn statuses(lines: &[Value]) -> Vec<(u64, String)> {
    let mut out: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l["job"].as_u64().unwrap(),
                l["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn outputs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".png"))
        .collect();
    names.sort();
    names
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// Three shards as three processes — one by `--shard`, one by Slurm's array variables, one by
/// a Kubernetes Indexed Job's index — write every output exactly once, each shard the jobs
/// `k mod 3` and its own log (`batch.shard-K-of-3.jsonl`: no file appended to by two
/// processes); a rerun of the whole batch then skips them all.
#[test]
fn shards_cover_every_job_once_and_a_rerun_skips_all() {
    let dir = scratch("batch-shards");
    let (contents, styles) = inputs(&dir);
    let out = dir.join("out");
    let mut children = Vec::new();
    let mut by_option = batch_cmd(&contents, &styles, &out, &["--shard", "0/3", "--quiet"]);
    children.push(by_option.spawn().unwrap());
    let mut slurm = batch_cmd(&contents, &styles, &out, &["--quiet"]);
    slurm
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3");
    children.push(slurm.spawn().unwrap());
    let mut k8s = batch_cmd(&contents, &styles, &out, &["--shard-count", "3", "--quiet"]);
    k8s.env("JOB_COMPLETION_INDEX", "2");
    children.push(k8s.spawn().unwrap());
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert!(
        !out.join("batch.jsonl").exists(),
        "a shard wrote the shared log"
    );
    let per_shard: Vec<Vec<Value>> = (0..3)
        .map(|k| lines_of(&out.join(format!("batch.shard-{k}-of-3.jsonl"))))
        .collect();
    let lines: Vec<Value> = per_shard.concat();
    let done = statuses(&lines);
    assert_eq!(
        done,
        (0..8).map(|j| (j, "done".to_string())).collect::<Vec<_>>()
    );
    assert_eq!(outputs(&out).len(), 8);
    assert_eq!(
        outputs(&out)[..2],
        ["shipwreck__starry_night.png", "shipwreck__the_scream.png"]
    );
    // Each process took the jobs k mod 3 of its shard: 0 by the option, 1 from Slurm (task 2
    // of an array from 1), 2 from Kubernetes.
    for (k, lines) in per_shard.iter().enumerate() {
        for line in lines {
            let (job, shard) = (line["job"].as_u64().unwrap(), &line["shard"]);
            assert_eq!(shard[1], 3, "{line}");
            assert_eq!(shard[0].as_u64().unwrap(), job % 3, "{line}");
            assert_eq!(job % 3, k as u64, "a line in another shard's log: {line}");
        }
    }
    let before: Vec<_> = outputs(&out)
        .iter()
        .map(|n| std::fs::metadata(out.join(n)).unwrap().modified().unwrap())
        .collect();
    ok(batch_cmd(&contents, &styles, &out, &["--quiet"])
        .output()
        .unwrap());
    let rerun = &log_lines(&out);
    assert_eq!(
        statuses(rerun),
        (0..8)
            .map(|j| (j, "skipped".to_string()))
            .collect::<Vec<_>>()
    );
    let after: Vec<_> = outputs(&out)
        .iter()
        .map(|n| std::fs::metadata(out.join(n)).unwrap().modified().unwrap())
        .collect();
    assert_eq!(before, after, "a skipped output was rewritten");
}

/// A batch stopped by SIGTERM exits 143 and leaves no output for its unfinished pair; the
/// next run skips the finished pairs and does the rest.
#[cfg(unix)]
#[test]
fn a_killed_batch_resumes_where_it_stopped() {
    let dir = scratch("batch-resume");
    let out = dir.join("out");
    let contents = vec![data("tubingen.jpg"), data("shipwreck.jpg")];
    let styles = vec![data("the_scream.jpg")];
    // Long enough jobs (64 px, 40 evaluations) that the second is running when the signal comes.
    let long = ["--size", "64", "--iters", "40", "--quiet"];
    let mut child = batch_cmd(&contents, &styles, &out, &long).spawn().unwrap();
    let started = std::time::Instant::now();
    while log_lines(&out).is_empty() {
        assert!(
            started.elapsed().as_secs() < 300,
            "the first job never finished"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the batch ended before the signal"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert_eq!(
        statuses(&log_lines(&out)),
        [(0, "done".into()), (1, "interrupted".into())]
    );
    assert_eq!(
        outputs(&out),
        ["tubingen__the_scream.png"],
        "an unfinished output was written"
    );

    ok(batch_cmd(&contents, &styles, &out, &long).output().unwrap());
    assert_eq!(
        statuses(&log_lines(&out)[2..]),
        [(0, "skipped".into()), (1, "done".into())]
    );
    assert_eq!(outputs(&out).len(), 2);
}

/// A style that cannot be decoded fails its pairs, with the reason in the log; the other pairs
/// finish; the exit code is 1.
#[test]
fn a_broken_style_fails_its_pairs_and_the_rest_finish() {
    let dir = scratch("batch-broken");
    let out = dir.join("out");
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let contents = vec![data("tubingen.jpg"), data("shipwreck.jpg")];
    let styles = vec![broken, data("the_scream.jpg")];
    let o = batch_cmd(&contents, &styles, &out, &["--quiet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 of 4 jobs failed"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    let lines = log_lines(&out);
    assert_eq!(
        statuses(&lines),
        [
            (0, "failed".into()),
            (1, "done".into()),
            (2, "failed".into()),
            (3, "done".into())
        ]
    );
    let error = lines[0]["error"].as_str().unwrap();
    assert!(
        error.contains("broken.png") && error.contains("decode"),
        "{error}"
    );
    assert_eq!(
        outputs(&out),
        ["shipwreck__the_scream.png", "tubingen__the_scream.png"]
    );
}

/// A pair's batch output is byte-identical to `nst transfer` on that pair with the same
/// options, also when the pairs come from a `--pairs` file.
#[test]
fn batch_outputs_equal_transfer_outputs() {
    let dir = scratch("batch-equal");
    let out = dir.join("out");
    let pairs = dir.join("pairs.csv");
    let (content, style) = (data("shipwreck.jpg"), data("starry_night.jpg"));
    std::fs::write(
        &pairs,
        format!(
            "content,style\n{},{}\n{},{}\n",
            arg(&data("tubingen.jpg")),
            arg(&style),
            arg(&content),
            arg(&style)
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nst"));
    cmd.args([
        "batch",
        "--weights",
        arg(&weights()),
        "--out-dir",
        arg(&out),
    ])
    .args(RUN)
    .args(SHORT)
    .args(["--pairs", arg(&pairs), "--quiet"]);
    ok(cmd.output().unwrap());
    let single = dir.join("single.png");
    ok(Command::new(env!("CARGO_BIN_EXE_nst"))
        .args(["transfer", "--weights", arg(&weights())])
        .args(RUN)
        .args(SHORT)
        .args(["--content", arg(&content), "--style", arg(&style)])
        .args(["--output", arg(&single), "--quiet"])
        .output()
        .unwrap());
    let from_batch = std::fs::read(out.join("shipwreck__starry_night.png")).unwrap();
    assert!(
        from_batch == std::fs::read(&single).unwrap(),
        "batch and transfer differ"
    );
    // The first pair's Grams of that style were reused for the second: still identical.
    assert_eq!(outputs(&out).len(), 2);
}
