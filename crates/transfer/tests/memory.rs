//! The memory budget's size parser and byte formatting (the estimate itself is checked end to
//! end against the real network in `tests/end_to_end.rs`, and against measured peaks in
//! BENCHMARKS.md).

use nst_transfer::memory::{cgroup_limit, format_bytes, parse_bytes};
use std::path::{Path, PathBuf};

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

/// A fake `/sys/fs/cgroup`: each `(file, contents)` written below a fresh directory.
fn cgroup_tree(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("nst-cgroup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (file, contents) in files {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    root
}

const SLURM_STEP: &str = "system.slice/slurmstepd.scope/job_7/step_0/user/task_0";

/// A Slurm job under cgroup v2 sees the host's hierarchy: its limit sits on the job's cgroup,
/// levels above its own, and the root cgroup has no `memory.max` at all. Every ancestor's limit
/// applies, so the smallest one on the way up counts.
#[test]
fn the_cgroup_limit_of_a_slurm_job_is_found_above_its_own_cgroup() {
    let own = format!("0::/{SLURM_STEP}\n");
    let job = "system.slice/slurmstepd.scope/job_7";
    let root = cgroup_tree(
        "slurm",
        &[
            ("system.slice/memory.max", "max\n"),
            (&format!("{job}/memory.max"), "8589934592\n"),
            (&format!("{job}/step_0/memory.max"), "max\n"),
            (&format!("{SLURM_STEP}/memory.max"), "max\n"),
        ],
    );
    assert_eq!(cgroup_limit(&own, &root), Some(8 << 30));
    std::fs::write(root.join(job).join("step_0/memory.max"), "4294967296").unwrap();
    assert_eq!(
        cgroup_limit(&own, &root),
        Some(4 << 30),
        "the step's smaller limit"
    );
    std::fs::write(root.join(job).join("memory.max"), "max").unwrap();
    std::fs::write(root.join(job).join("step_0/memory.max"), "max").unwrap();
    assert_eq!(cgroup_limit(&own, &root), None, "no level sets a limit");
}

/// A container with its own cgroup namespace (Kubernetes on cgroup v2) sees its cgroup as `/`.
#[test]
fn the_cgroup_limit_of_a_namespaced_container_is_the_root_one() {
    let root = cgroup_tree("k8s", &[("memory.max", "2147483648\n")]);
    assert_eq!(cgroup_limit("0::/\n", &root), Some(2 << 30));
}

/// cgroup v1: the `memory` controller's line, `memory.limit_in_bytes` under `memory/`, "no limit"
/// as a huge number; a container that sees its host-side path but only its own subtree falls
/// back to the mount's root.
#[test]
fn cgroup_v1_limits_are_read_from_the_memory_controller() {
    let unlimited = "9223372036854771712\n";
    let own = "9:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
    let root = cgroup_tree(
        "v1",
        &[
            ("memory/memory.limit_in_bytes", unlimited),
            (
                "memory/process_api/abc/memory.limit_in_bytes",
                "1073741824\n",
            ),
            ("pids/process_api/abc/memory.limit_in_bytes", "1024\n"),
        ],
    );
    assert_eq!(cgroup_limit(own, &root), Some(1 << 30));
    let docker = "4:cpuset,memory:/docker/0123abcd\n";
    let container = cgroup_tree(
        "v1-docker",
        &[("memory/memory.limit_in_bytes", "3221225472")],
    );
    assert_eq!(cgroup_limit(docker, &container), Some(3 << 30));
    let free = cgroup_tree("v1-free", &[("memory/memory.limit_in_bytes", unlimited)]);
    assert_eq!(cgroup_limit(own, &free), None);
    assert_eq!(cgroup_limit("", Path::new("/nonexistent")), None);
}
