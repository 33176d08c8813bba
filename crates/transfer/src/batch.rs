//! The jobs of `nst batch`: which content × style pairs there are, where each one's output
//! goes, and which of them this process takes when the work is spread over a cluster's
//! scheduler (Slurm job arrays, Kubernetes Indexed Jobs) — never a scheduler of our own.
//!
//! Jobs are numbered in a fixed order (contents sorted, then styles, or the rows of a pairs
//! file), so every process of an array computes the same list and shard `K` of `N` takes the
//! jobs whose number is `K mod N`.

use std::path::{Path, PathBuf};
use thiserror::Error;

/// A batch that cannot be set up.
#[derive(Debug, Error)]
pub enum BatchError {
    /// A path could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A directory holds no image.
    #[error("{0}: no images in this directory (looked for {IMAGE_EXTENSIONS:?})")]
    NoImages(PathBuf),
    /// A row of the pairs file is not `content,style`.
    #[error("{path}, line {line}: expected `content,style`, got {text:?}")]
    BadPairsRow {
        /// The pairs file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// Two jobs would write the same output.
    #[error("{first} and {second} would both write {output}: give the images different names")]
    SameOutput {
        /// The output both would write.
        output: PathBuf,
        /// The first job's pair.
        first: String,
        /// The second job's pair.
        second: String,
    },
    /// The shard is not `K/N` with `0 ≤ K < N`, or the environment does not say which.
    #[error("{0}")]
    Shard(String),
}

/// File extensions taken from a directory (case-insensitive): what the decoder reads.
pub const IMAGE_EXTENSIONS: [&str; 14] = [
    "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "pnm", "ppm", "pgm", "tga", "qoi",
    "pbm",
];

/// One content × style pair and its output file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// 0-based position in the batch (what shards divide).
    pub index: usize,
    /// The content image.
    pub content: PathBuf,
    /// The style image.
    pub style: PathBuf,
    /// `DIR/<content stem>__<style stem>.<ext>`.
    pub output: PathBuf,
}

/// The images `paths` name: a file as itself, a directory as its image files (by extension,
/// hidden files skipped), sorted by name.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, BatchError> {
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let io = |source| BatchError::Io {
            path: path.clone(),
            source,
        };
        let mut images = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io)? {
            let p = entry.map_err(io)?.path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if p.is_file() && !hidden && is_image_name(&p) {
                images.push(p);
            }
        }
        if images.is_empty() {
            return Err(BatchError::NoImages(path.clone()));
        }
        images.sort();
        out.extend(images);
    }
    Ok(out)
}

fn is_image_name(p: &Path) -> bool {
    p.extension().is_some_and(|e| {
        let e = e.to_string_lossy().to_ascii_lowercase();
        IMAGE_EXTENSIONS.contains(&e.as_str())
    })
}

/// Every content with every style, contents outermost.
pub fn all_pairs(contents: &[PathBuf], styles: &[PathBuf]) -> Vec<(PathBuf, PathBuf)> {
    contents
        .iter()
        .flat_map(|c| styles.iter().map(move |s| (c.clone(), s.clone())))
        .collect()
}

/// The pairs of a CSV file (`--pairs`): one `content,style` row per job, paths relative to the
/// current directory; blank lines, `#` comments and a `content,style` header are skipped.
pub fn read_pairs(path: &Path) -> Result<Vec<(PathBuf, PathBuf)>, BatchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BatchError::Io {
        path: path.into(),
        source,
    })?;
    let mut pairs = Vec::new();
    // A spreadsheet's "CSV UTF-8" export starts with a byte-order mark; its line ends are CRLF
    // (which `lines` already drops).
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.eq_ignore_ascii_case("content,style") {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        match fields[..] {
            [c, s] if !c.is_empty() && !s.is_empty() => pairs.push((c.into(), s.into())),
            _ => {
                return Err(BatchError::BadPairsRow {
                    path: path.into(),
                    line: i + 1,
                    text: line.into(),
                })
            }
        }
    }
    Ok(pairs)
}

/// The jobs of `pairs`, numbered in order, writing into `out_dir` with extension `ext`.
/// Two pairs that would write the same file are an error (say, `a/x.jpg` and `b/x.png`).
pub fn jobs(
    pairs: &[(PathBuf, PathBuf)],
    out_dir: &Path,
    ext: &str,
) -> Result<Vec<Job>, BatchError> {
    let stem = |p: &Path| {
        p.file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
    };
    let mut jobs: Vec<Job> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (index, (content, style)) in pairs.iter().enumerate() {
        let output = out_dir.join(format!("{}__{}.{ext}", stem(content), stem(style)));
        if let Some(&first) = seen.get(&output) {
            let j: &Job = &jobs[first];
            return Err(BatchError::SameOutput {
                output,
                first: format!("{} × {}", j.content.display(), j.style.display()),
                second: format!("{} × {}", content.display(), style.display()),
            });
        }
        seen.insert(output.clone(), index);
        jobs.push(Job {
            index,
            content: content.clone(),
            style: style.clone(),
            output,
        });
    }
    Ok(jobs)
}

/// Shard `index` of `count`: the jobs whose number is `index mod count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard number.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Whether this shard takes job number `job`.
    pub fn takes(self, job: usize) -> bool {
        job % self.count == self.index
    }

    /// `K/N`, `0 ≤ K < N`.
    pub fn parse(text: &str) -> Result<Shard, BatchError> {
        let bad = || {
            BatchError::Shard(format!(
                "--shard: expected K/N with 0 ≤ K < N, got {text:?}"
            ))
        };
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (k, n) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        Shard::new(k, n).ok_or_else(bad)
    }

    fn new(index: usize, count: usize) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// The shard the scheduler assigned through the environment (`var` reads a variable), or
    /// `None` outside an array job:
    /// - Slurm job arrays: `SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN` (arrays may
    ///   start at 1), divided by `SLURM_ARRAY_TASK_STEP` (`--array=0-15:4` numbers its tasks
    ///   0, 4, 8, 12), of `SLURM_ARRAY_TASK_COUNT`; a task outside that arithmetic range (an
    ///   `--array` list with gaps) is refused rather than left to skip or repeat a shard;
    /// - Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX` of `shard_count` (`--shard-count`,
    ///   the Job's `completions`; Kubernetes does not put it in the environment).
    pub fn from_env(
        shard_count: Option<usize>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Shard>, BatchError> {
        let number = |name: &str| -> Result<Option<usize>, BatchError> {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        BatchError::Shard(format!("{name}={v:?} is not a whole number"))
                    })
                })
                .transpose()
        };
        if let (Some(id), Some(count)) = (
            number("SLURM_ARRAY_TASK_ID")?,
            number("SLURM_ARRAY_TASK_COUNT")?,
        ) {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            return id
                .checked_sub(min)
                .filter(|k| k % step == 0)
                .and_then(|k| Shard::new(k / step, count))
                .map(Some)
                .ok_or_else(|| {
                    BatchError::Shard(format!(
                        "Slurm array task {id} is not one of {count} tasks from {min} in steps \
                         of {step}; use an --array range (A-B or A-B:S), or --shard K/N"
                    ))
                });
        }
        match (number("JOB_COMPLETION_INDEX")?, shard_count) {
            (Some(k), Some(n)) => Shard::new(k, n).map(Some).ok_or_else(|| {
                BatchError::Shard(format!(
                    "JOB_COMPLETION_INDEX={k} is not below --shard-count {n}"
                ))
            }),
            (Some(_), None) => Err(BatchError::Shard(
                "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): give --shard-count, \
                 the Job's completions"
                    .into(),
            )),
            (None, Some(_)) => Err(BatchError::Shard(
                "--shard-count needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); \
                 elsewhere use --shard K/N"
                    .into(),
            )),
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shards_divide_the_jobs_exactly_once() {
        let shards: Vec<Shard> = (0..3)
            .map(|k| Shard::parse(&format!("{k}/3")).unwrap())
            .collect();
        for job in 0..10 {
            assert_eq!(shards.iter().filter(|s| s.takes(job)).count(), 1);
        }
        for bad in ["3/3", "1", "a/2", "1/0", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slurm_and_kubernetes_select_the_same_shard_as_the_option() {
        let want = Some(Shard { index: 1, count: 3 });
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert_eq!(Shard::from_env(None, env(&slurm)).unwrap(), want);
        let from_one = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(Shard::from_env(None, env(&from_one)).unwrap(), want);
        let k8s = [("JOB_COMPLETION_INDEX", "1")];
        assert_eq!(Shard::from_env(Some(3), env(&k8s)).unwrap(), want);
        assert_eq!(Shard::from_env(None, env(&[])).unwrap(), None);
        assert!(Shard::from_env(None, env(&k8s)).is_err());
        assert!(Shard::from_env(Some(3), env(&[])).is_err());
        assert!(Shard::from_env(Some(1), env(&k8s)).is_err());
        let outside = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert!(Shard::from_env(None, env(&outside)).is_err());
        // --array=1-9:4 numbers its three tasks 1, 5, 9.
        let stepped = |id| {
            let vars = [
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_STEP", "4"),
            ];
            Shard::from_env(None, env(&vars))
        };
        assert_eq!(stepped("5").unwrap(), want);
        assert_eq!(stepped("9").unwrap(), Some(Shard { index: 2, count: 3 }));
        // A list with gaps (--array=1,3,6: count 3, min 1) cannot be numbered 0..3.
        let listed = [
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert!(Shard::from_env(None, env(&listed)).is_err());
        assert!(stepped("3").is_err(), "not on the step");
    }

    #[test]
    fn outputs_are_named_after_both_images_and_never_collide() {
        let pairs = all_pairs(
            &["c/a.jpg".into(), "c/b.png".into()],
            &["s/x.jpg".into(), "s/y.jpg".into()],
        );
        let jobs = jobs(&pairs, Path::new("out"), "png").unwrap();
        let names: Vec<_> = jobs
            .iter()
            .map(|j| j.output.display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "out/a__x.png",
                "out/a__y.png",
                "out/b__x.png",
                "out/b__y.png"
            ]
        );
        assert_eq!(jobs[3].index, 3);
        let clash = all_pairs(&["c/a.jpg".into(), "d/a.png".into()], &["s/x.jpg".into()]);
        assert!(matches!(
            super::jobs(&clash, Path::new("out"), "png"),
            Err(BatchError::SameOutput { .. })
        ));
    }

    #[test]
    fn directories_give_their_images_sorted() {
        let dir = std::env::temp_dir().join(format!("nst-batch-expand-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["b.PNG", "a.jpg", ".hidden.png", "notes.txt"] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let got = expand(&[dir.clone(), "single.jpg".into()]).unwrap();
        assert_eq!(
            got,
            [dir.join("a.jpg"), dir.join("b.PNG"), "single.jpg".into()]
        );
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(matches!(expand(&[empty]), Err(BatchError::NoImages(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pairs_files_skip_headers_comments_and_blank_lines() {
        let path = std::env::temp_dir().join(format!("nst-pairs-{}.csv", std::process::id()));
        std::fs::write(
            &path,
            "content,style\n# a comment\n\na.jpg, x.jpg\nb.jpg,y.jpg\n",
        )
        .unwrap();
        let pairs = read_pairs(&path).unwrap();
        assert_eq!(
            pairs,
            [
                ("a.jpg".into(), "x.jpg".into()),
                ("b.jpg".into(), "y.jpg".into())
            ]
        );
        // As a spreadsheet exports it: a byte-order mark and CRLF line ends.
        std::fs::write(
            &path,
            "\u{feff}content,style\r\na.jpg,x.jpg\r\nb.jpg,y.jpg\r\n",
        )
        .unwrap();
        assert_eq!(read_pairs(&path).unwrap(), pairs);
        std::fs::write(&path, "a.jpg,x.jpg\nb.jpg\n").unwrap();
        let err = read_pairs(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
