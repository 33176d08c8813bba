//! The deployment files are checked here, since no container runtime or scheduler is at hand:
//! every path the `Dockerfile` copies and every command it runs exists in the repository, and
//! the Slurm and Kubernetes files call `nst batch` with options it has, sharded consistently.

mod common;
use common::root;
use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The long options `nst batch --help` lists.
fn batch_options() -> Vec<String> {
    let help = Command::new(env!("CARGO_BIN_EXE_nst"))
        .args(["batch", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    String::from_utf8(help.stdout)
        .unwrap()
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches(',').to_string())
        .collect()
}

/// Every `--option` in `args` is one `nst batch` has.
fn assert_batch_options(file: &str, args: &[String]) {
    let known = batch_options();
    for a in args.iter().filter(|a| a.starts_with("--")) {
        assert!(known.contains(a), "{file}: nst batch has no option {a}");
    }
}

#[test]
fn the_dockerfile_copies_and_runs_only_what_the_repository_has() {
    let dockerfile = read("Dockerfile");
    let (mut copies, mut runs) = (0, 0);
    for line in dockerfile.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"COPY") if !words[1].starts_with("--from") => {
                // COPY SRC... DEST: every source is in the repository.
                for src in &words[1..words.len() - 1] {
                    assert!(root().join(src).exists(), "Dockerfile copies missing {src}");
                    copies += 1;
                }
            }
            Some(&"RUN") => {
                runs += 1;
                match words[1] {
                    "python3" => assert!(
                        root().join(words[2]).is_file(),
                        "Dockerfile runs missing {}",
                        words[2]
                    ),
                    "cargo" => {
                        let package = words[words.iter().position(|w| *w == "-p").unwrap() + 1];
                        let manifest = read(&format!(
                            "crates/{}/Cargo.toml",
                            package.trim_start_matches("nst-")
                        ));
                        assert!(manifest.contains(&format!("name = \"{package}\"")));
                    }
                    other => panic!("Dockerfile runs {other}, which this test does not check"),
                }
            }
            Some(&"ENTRYPOINT") => {
                assert!(
                    line.contains("\"nst\""),
                    "the entry point is the nst binary"
                );
                assert!(read("crates/cli/Cargo.toml").contains("name = \"nst\""));
            }
            _ => {}
        }
    }
    assert!(copies >= 4 && runs == 2, "{copies} copies, {runs} runs");
    assert!(dockerfile.contains("--out /weights/vgg16"));
    assert!(dockerfile.contains("NST_WEIGHTS=/opt/nst/weights"));
    // The weights are fetched in the build; the build context must not carry local ones.
    let ignored = read(".dockerignore");
    for dir in ["target", "tools/.venv", "weights/vgg16"] {
        assert!(
            ignored.lines().any(|l| l.trim() == dir),
            ".dockerignore lacks {dir}"
        );
    }
}

#[test]
fn the_slurm_array_runs_nst_batch_with_real_options() {
    let script = read("deploy/slurm/nst-array.sbatch");
    assert!(script.contains("#SBATCH --array="));
    // The command: from `srun nst batch` to the end of its continued lines.
    let start = script
        .find("\nsrun nst batch")
        .expect("the script runs srun nst batch")
        + 1;
    let command: String = script[start..]
        .lines()
        .scan(true, |more, l| {
            let take = *more;
            *more = l.trim_end().ends_with('\\');
            take.then(|| l.trim_end_matches('\\').to_string())
        })
        .collect::<Vec<_>>()
        .join(" ");
    let args: Vec<String> = command.split_whitespace().map(String::from).collect();
    assert_eq!(args[..3], ["srun", "nst", "batch"]);
    assert_batch_options("nst-array.sbatch", &args);
    // Slurm's variables choose the shard: no --shard may override them.
    assert!(!args.iter().any(|a| a == "--shard" || a == "--shard-count"));
}

#[test]
fn the_kubernetes_job_shards_by_its_completions() {
    let yaml = read("deploy/k8s/nst-indexed-job.yaml");
    assert!(yaml.contains("completionMode: Indexed"));
    let completions: u64 = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("completions:"))
        .expect("completions")
        .trim()
        .parse()
        .unwrap();
    let args_line = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("args:"))
        .expect("the container's args");
    let args: Vec<String> = serde_json::from_str(args_line.trim()).expect("args as a flow list");
    assert_eq!(args[0], "batch");
    assert_batch_options("nst-indexed-job.yaml", &args);
    let count = args.iter().position(|a| a == "--shard-count").unwrap() + 1;
    assert_eq!(args[count].parse::<u64>().unwrap(), completions);
}
