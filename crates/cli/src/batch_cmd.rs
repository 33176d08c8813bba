//! `nst batch`: every content × style pair (or the rows of `--pairs`), one process, one network,
//! each style's Grams computed once; resumable (existing outputs are skipped, outputs are
//! written atomically), one failed pair never stops the rest, and one shard of a cluster job
//! when `--shard` or the scheduler's environment says so (`nst_transfer::batch`).
//!
//! Every job appends one JSON line to the batch's log (see [`log_path`]): `job`, `content`,
//! `style`, `output`, `status` (`done`, `skipped`, `failed` or `interrupted`), `seconds`,
//! `evals`, `loss`, `error`, and `shard` (`[K, N]`, or null for the whole batch). The exit code
//! is 1 if any job failed, 128 + signal if stopped by SIGINT/SIGTERM (the unfinished pair
//! writes nothing and is redone by the next run).

use crate::args::{BatchArgs, ObjectiveArgs, TransferArgs};
use crate::error::CliError;
use crate::setup;
use crate::setup::StyleCache;
use crate::transfer_cmd::{render, use_threads, validate_run, Ended, Partial, Stop};
use nst_transfer::batch::{all_pairs, expand, jobs, read_pairs, Job, Shard};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Runs `nst batch`.
pub fn batch(args: BatchArgs) -> Result<Ended, CliError> {
    setup::validate_terms(&args.terms)?;
    validate_run(&args.run)?;
    let pairs = match &args.pairs {
        Some(path) => read_pairs(path)?,
        None => all_pairs(&expand(&args.content)?, &expand(&args.style)?),
    };
    let all = jobs(&pairs, &args.out_dir, args.format.extension())?;
    let shard = match &args.shard {
        Some(text) => Some(Shard::parse(text)?),
        None => Shard::from_env(args.shard_count.map(|n| n as usize), |name| {
            std::env::var(name).ok()
        })?,
    };
    let mine: Vec<&Job> = all
        .iter()
        .filter(|j| shard.is_none_or(|s| s.takes(j.index)))
        .collect();
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("--out-dir {}: {e}", args.out_dir.display()))?;
    use_threads(args.run.threads)?;
    let say = |msg: String| {
        if !args.run.quiet {
            eprintln!("{msg}");
        }
    };
    let (vgg, network_line) = setup::load_network(&args.terms)?;
    say(network_line);
    say(format!(
        "batch: {} jobs{}, {} for this process → {}",
        all.len(),
        shard.map_or(String::new(), |s| format!(
            ", shard {}/{}",
            s.index, s.count
        )),
        mine.len(),
        args.out_dir.display()
    ));

    let log = log_path(&args.out_dir, shard);
    let stop = Stop::on_signals();
    let mut styles = StyleCache::default();
    let (mut done, mut skipped, mut failed) = (0, 0, 0);
    for (n, job) in mine.iter().enumerate() {
        if stop.requested() {
            return Ok(stop.ended());
        }
        let heading = format!(
            "[{}/{}] {} × {} → {}",
            n + 1,
            mine.len(),
            job.content.display(),
            job.style.display(),
            job.output.display()
        );
        if job.output.exists() {
            skipped += 1;
            say(format!("{heading}: exists, skipped"));
            append(&log, shard, job, "skipped", 0.0, None, None)?;
            continue;
        }
        say(heading);
        let started = Instant::now();
        let result = render(
            &job_args(&args, job),
            &vgg,
            &mut styles,
            &stop,
            Partial::Discard,
        );
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(r) if matches!(r.ended, Ended::Interrupted(_)) => {
                append(
                    &log,
                    shard,
                    job,
                    "interrupted",
                    secs,
                    Some((r.evals, r.loss)),
                    None,
                )?;
                say(format!(
                    "batch: interrupted; {done} done, {skipped} skipped, {failed} failed — \
                     run again to finish (finished outputs are skipped)"
                ));
                return Ok(r.ended);
            }
            Ok(r) => {
                done += 1;
                append(
                    &log,
                    shard,
                    job,
                    "done",
                    secs,
                    Some((r.evals, r.loss)),
                    None,
                )?;
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "error: {} × {}: {e}",
                    job.content.display(),
                    job.style.display()
                );
                append(&log, shard, job, "failed", secs, None, Some(e.to_string()))?;
            }
        }
    }
    say(format!(
        "batch: {done} done, {skipped} skipped, {failed} failed (log: {})",
        log.display()
    ));
    if failed > 0 {
        return Err(format!(
            "{failed} of {} jobs failed; their errors are above and in {}",
            mine.len(),
            log.display()
        )
        .into());
    }
    Ok(Ended::Done)
}

/// The `nst transfer` options of one job: the pair, its output, and the batch's settings, so
/// that the job's output is exactly what `nst transfer` would write.
fn job_args(args: &BatchArgs, job: &Job) -> TransferArgs {
    TransferArgs {
        objective: ObjectiveArgs {
            content: job.content.clone(),
            style: vec![job.style.clone()],
            style_blend: None,
            terms: args.terms.clone(),
        },
        output: job.output.clone(),
        run: args.run.clone(),
        save_every: None,
        log_json: None,
        progress_grid: None,
        grid: (2, 5),
        plot: None,
        dry_run: false,
    }
}

/// The log of a batch writing into `out_dir`: `batch.jsonl` for a whole batch, and one file
/// per shard, `batch.shard-K-of-N.jsonl`, so that no two processes append to the same file —
/// on NFS, where cluster jobs usually share their directory, appends from several machines
/// can overwrite each other (open(2), `O_APPEND`). `cat DIR/batch*.jsonl` reads them all.
pub fn log_path(out_dir: &Path, shard: Option<Shard>) -> PathBuf {
    out_dir.join(match shard {
        None => "batch.jsonl".to_string(),
        Some(s) => format!("batch.shard-{}-of-{}.jsonl", s.index, s.count),
    })
}

/// Appends one job's line to the log: one `write` of a whole line to a file opened for
/// appending, which only this process writes (see [`log_path`]).
fn append(
    log: &Path,
    shard: Option<Shard>,
    job: &Job,
    status: &str,
    seconds: f64,
    result: Option<(usize, Option<f32>)>,
    error: Option<String>,
) -> Result<(), CliError> {
    let (evals, loss) = result.unwrap_or((0, None));
    let line = json!({
        "job": job.index,
        "content": job.content.display().to_string(),
        "style": job.style.display().to_string(),
        "output": job.output.display().to_string(),
        "status": status,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "evals": evals,
        "loss": loss,
        "error": error,
        "shard": shard.map(|s| [s.index, s.count]),
    });
    let io = |source| CliError::Log {
        path: log.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io)?;
    file.write_all(format!("{line}\n").as_bytes()).map_err(io)
}
