//! `logflow schema infer FILE`: print a `[schema]` section that reads a sample of the file.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use crate::Error;

#[derive(clap::Subcommand, Debug)]
pub enum SchemaCmd {
    /// Read the first records of FILE and print a `[schema]` that reads them (JSON paths and
    /// types, or a regex of text lines; the time key and its format detected).
    Infer(InferArgs),
}

#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// A file of records, one per line (`-` = stdin).
    file: PathBuf,
    /// `json` (objects, nested or not), `regex` (text lines), or `auto`: `json` when most of
    /// the records read are JSON objects, else `regex` (the choice is said on stderr).
    #[arg(long, default_value = "auto", value_parser = ["auto", "json", "regex"])]
    format: String,
    /// How many records to read.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    lines: u64,
}

/// Longest line read; a longer one is left out of the sample (a job would dead-letter it).
const MAX_LINE: u64 = 1 << 20;

pub fn schema(cmd: SchemaCmd) -> Result<(), Error> {
    let SchemaCmd::Infer(args) = cmd;
    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&args.file).map_err(|e| Error::io(&args.file, e))?)
    };
    let mut reader = BufReader::new(input);
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    while (lines.len() as u64) < args.lines {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(&args.file, e))?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') && n as u64 > MAX_LINE {
            // Skip the rest of an over-long line.
            let mut sink = Vec::new();
            loop {
                sink.clear();
                let m = (&mut reader)
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut sink)
                    .map_err(|e| Error::io(&args.file, e))?;
                if m == 0 || sink.last() == Some(&b'\n') {
                    break;
                }
            }
            continue;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Ok(s) = std::str::from_utf8(line) {
            if !s.trim().is_empty() {
                lines.push(s.to_string());
            }
        }
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let format = match args.format.as_str() {
        "auto" => choose(&args.file.display().to_string(), &refs),
        f => f,
    };
    let text = match format {
        "regex" => crate::parse::infer::infer_regex(&refs),
        _ => crate::parse::infer::infer_json(&refs),
    }
    .map_err(|m| Error::Usage(format!("{}: {m}", args.file.display())))?;
    let mut out = std::io::stdout().lock();
    super::stdout_result(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// `--format auto`: `json` when most records are JSON objects, else `regex`; says which and why.
fn choose(file: &str, lines: &[&str]) -> &'static str {
    let objects = lines
        .iter()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()))
        .count();
    let n = lines.len();
    if n > 0 && objects * 2 > n {
        tracing::info!(
            "logflow: --format auto: {file} is json ({objects} of the first {n} records are JSON objects); inferring a `json` schema"
        );
        return "json";
    }
    let records: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    let sniffed = crate::parse::sniff::sniff(&records, crate::parse::Format::Text);
    if sniffed.format == crate::parse::Format::Apache {
        tracing::info!(
            "logflow: --format auto: {file} is an access log ({sniffed}); `--format apache` reads it \
             without a schema; inferring a `regex` schema"
        );
    } else {
        tracing::info!(
            "logflow: --format auto: {file} is text ({objects} of the first {n} records are JSON objects); inferring a `regex` schema"
        );
    }
    "regex"
}
