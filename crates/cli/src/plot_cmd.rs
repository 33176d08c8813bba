//! `nst plot LOG.jsonl FILE.svg`: the loss chart of a finished run, from its `--log-json` file.

use crate::args::PlotArgs;
use crate::error::CliError;
use nst_transfer::plot::{write_loss_svg, LossPoint};
use serde_json::Value;

/// Runs `nst plot`.
pub fn plot(args: PlotArgs) -> Result<(), CliError> {
    let text =
        std::fs::read_to_string(&args.log).map_err(|e| format!("{}: {e}", args.log.display()))?;
    let mut points = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let point = parse_line(line)
            .map_err(|why| format!("{}, line {}: {why}", args.log.display(), i + 1))?;
        points.push(point);
    }
    if points.is_empty() {
        return Err(format!("{}: no evaluations to plot", args.log.display()).into());
    }
    write_loss_svg(&points, &args.output)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", args.output.display())))
}

/// One line of a `--log-json` file. `stage` and `size` are optional (logs written before
/// coarse-to-fine had neither: one stage).
fn parse_line(line: &str) -> Result<LossPoint, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let number = |key: &str| {
        v.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("no number {key:?}"))
    };
    let count = |key: &str, default: u64| match v.get(key) {
        None => Ok(default),
        Some(x) => x
            .as_u64()
            .ok_or_else(|| format!("{key:?} is not a whole number")),
    };
    let size = match v.get("size").and_then(Value::as_array) {
        Some(wh) if wh.len() == 2 => (
            wh[0].as_u64().unwrap_or(0) as u32,
            wh[1].as_u64().unwrap_or(0) as u32,
        ),
        _ => (0, 0),
    };
    Ok(LossPoint {
        eval: v
            .get("eval")
            .and_then(Value::as_u64)
            .ok_or("no whole number \"eval\"")? as usize,
        total: number("total")? as f32,
        content: number("content")? as f32,
        style: number("style")? as f32,
        tv: number("tv")? as f32,
        stage: count("stage", 1)? as usize,
        size,
    })
}
