//! Container logs in the CRI format the kubelet keeps under /var/log/pods: one file per run of a
//! container (`N.log`, N the restart count), each line `TIMESTAMP STREAM TAG MESSAGE`, where TAG
//! is `F` for a full line and `P` for part of a longer one. Reading them back serves
//! `kubectl logs` with `--timestamps`, `--tail`, `--since` and `--previous`.
//!
//! A run's log is rotated as the kubelet rotates it: past `containerLogMaxSize` (10 MiB) the
//! file is renamed `N.log.YYYYMMDD-HHMMSS` and a new `N.log` begun, keeping at most
//! `containerLogMaxFiles` (5) files in all; `kubectl logs` reads the current file. Only the
//! last two runs of a container keep their logs (the current one and `--previous`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};

/// Longest line kept whole; longer output is split into `P` parts, as the kubelet does at 16 KiB.
const MAX_LINE: usize = 16 * 1024;

/// When logs are rotated: the kubelet's `containerLogMaxSize` and `containerLogMaxFiles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// A log file grows to this many bytes before it is rotated.
    pub max_size: u64,
    /// Files kept per run, the current one included (at least 2).
    pub max_files: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// The file a run writes to now.
struct Current {
    file: std::fs::File,
    path: PathBuf,
    size: u64,
    rotation: Rotation,
}

impl Current {
    /// Renames the file aside, starts a new one, and removes the oldest rotated files past
    /// the limit.
    fn rotate(&mut self) -> std::io::Result<()> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let now = Utc::now();
        let mut aside = self
            .path
            .with_file_name(format!("{name}.{}", now.format("%Y%m%d-%H%M%S")));
        if aside.exists() {
            aside = self
                .path
                .with_file_name(format!("{name}.{}", now.format("%Y%m%d-%H%M%S%.9f")));
        }
        std::fs::rename(&self.path, &aside)?;
        self.file = std::fs::File::create(&self.path)?;
        self.size = 0;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let prefix = format!("{name}.");
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        rotated.sort();
        let keep = self.rotation.max_files.max(2) - 1;
        for old in &rotated[..rotated.len().saturating_sub(keep)] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

/// One run's log file, shared by its stdout and stderr writers.
#[derive(Clone)]
pub struct LogFile {
    file: Arc<Mutex<Current>>,
}

impl LogFile {
    /// Creates (truncating) the log of one run, rotated by `rotation`. The logs of the runs
    /// before the previous one are removed.
    pub fn create(path: &Path, rotation: Rotation) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            prune_runs(dir, path)?;
        }
        Ok(LogFile {
            file: Arc::new(Mutex::new(Current {
                file: std::fs::File::create(path)?,
                path: path.to_path_buf(),
                size: 0,
                rotation,
            })),
        })
    }

    fn append(&self, stream: &str, tag: char, message: &[u8]) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(message.len() + 48);
        line.extend_from_slice(
            Utc::now()
                .to_rfc3339_opts(SecondsFormat::Nanos, true)
                .as_bytes(),
        );
        line.push(b' ');
        line.extend_from_slice(stream.as_bytes());
        line.push(b' ');
        line.push(tag as u8);
        line.push(b' ');
        line.extend_from_slice(message);
        line.push(b'\n');
        let mut current = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // Rotated before a line that would take it past its size, a log's current file always
        // holds the latest line.
        if current.size > 0 && current.size + line.len() as u64 > current.rotation.max_size {
            current.rotate()?;
        }
        current.file.write_all(&line)?;
        current.size += line.len() as u64;
        Ok(())
    }

    /// A writer for one stream (`stdout` or `stderr`) of this run.
    pub fn stream(&self, stream: &'static str) -> StreamWriter {
        StreamWriter {
            log: self.clone(),
            stream,
            partial: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

/// Splits a stream's bytes into log lines; a line not ended yet waits for its end (or for
/// [`StreamWriter::finish`]).
#[derive(Clone)]
pub struct StreamWriter {
    log: LogFile,
    stream: &'static str,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl StreamWriter {
    pub fn write(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            partial.extend_from_slice(&bytes[..end]);
            bytes = &bytes[end + 1..];
            self.emit_full(&mut partial)?;
        }
        partial.extend_from_slice(bytes);
        while partial.len() > MAX_LINE {
            let rest = partial.split_off(MAX_LINE);
            self.log.append(self.stream, 'P', &partial)?;
            *partial = rest;
        }
        Ok(())
    }

    fn emit_full(&self, partial: &mut Vec<u8>) -> std::io::Result<()> {
        while partial.len() > MAX_LINE {
            let rest = partial.split_off(MAX_LINE);
            self.log.append(self.stream, 'P', partial)?;
            *partial = rest;
        }
        self.log.append(self.stream, 'F', partial)?;
        partial.clear();
        Ok(())
    }

    /// Writes out a last line that had no newline, when the run ends.
    pub fn finish(&self) -> std::io::Result<()> {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        if partial.is_empty() {
            return Ok(());
        }
        self.emit_full(&mut partial)
    }
}

/// Where a container's runs keep their logs: `DIR/N.log`.
pub fn run_log(container_dir: &Path, restart_count: u32) -> PathBuf {
    container_dir.join(format!("{restart_count}.log"))
}

/// The run a log file belongs to: `N` of `N.log` or `N.log.TIMESTAMP`.
fn run_of(file_name: &str) -> Option<u32> {
    file_name.split_once(".log")?.0.parse().ok()
}

/// Removes the files of the runs before the one previous to `new` (a run log path).
fn prune_runs(dir: &Path, new: &Path) -> std::io::Result<()> {
    let Some(run) = new.file_name().and_then(|n| run_of(&n.to_string_lossy())) else {
        return Ok(());
    };
    for entry in std::fs::read_dir(dir)?.flatten() {
        if run_of(&entry.file_name().to_string_lossy()).is_some_and(|r| r + 1 < run) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// What `kubectl logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<usize>,
}

/// One parsed log line.
struct Line<'a> {
    time: &'a str,
    partial: bool,
    message: &'a str,
}

fn parse(line: &str) -> Option<Line<'_>> {
    let (time, rest) = line.split_once(' ')?;
    let (_stream, rest) = rest.split_once(' ')?;
    let (tag, message) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(Line {
        time,
        partial: tag == "P",
        message,
    })
}

/// Renders a CRI log as `kubectl logs` shows it: messages (joined across `P` parts), each
/// prefixed with its RFC 3339 time when asked, filtered by `since`, the last `tail_lines` only,
/// cut at `limit_bytes`.
pub fn render(text: &str, options: &LogOptions) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut pending: Option<(String, String)> = None;
    for raw in text.lines() {
        let Some(line) = parse(raw) else { continue };
        let entry = pending.get_or_insert_with(|| (line.time.to_string(), String::new()));
        entry.1.push_str(line.message);
        if !line.partial {
            lines.extend(pending.take());
        }
    }
    if let Some(since) = options.since {
        lines.retain(|(time, _)| {
            DateTime::parse_from_rfc3339(time).is_ok_and(|t| t.with_timezone(&Utc) >= since)
        });
    }
    if let Some(tail) = options.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let mut out = String::new();
    for (time, message) in lines {
        if options.timestamps {
            out.push_str(&time);
            out.push(' ');
        }
        out.push_str(&message);
        out.push('\n');
    }
    if let Some(limit) = options.limit_bytes
        && out.len() > limit
    {
        let mut cut = limit;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_become_timestamped_lines_and_render_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = run_log(dir.path(), 0);
        let log = LogFile::create(&path, Rotation::default()).unwrap();
        let (out, err) = (log.stream("stdout"), log.stream("stderr"));
        out.write(b"hello, ").unwrap();
        out.write(b"world\nsecond").unwrap();
        err.write(b"oops\n").unwrap();
        out.finish().unwrap();
        err.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let tags: Vec<&str> = text.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
        assert_eq!(tags, ["stdout", "stderr", "stdout"]);
        assert_eq!(
            render(&text, &LogOptions::default()),
            "hello, world\noops\nsecond\n"
        );
        let tail = LogOptions {
            tail_lines: Some(1),
            timestamps: true,
            ..Default::default()
        };
        let last = render(&text, &tail);
        assert!(last.ends_with(" second\n"), "{last}");
        assert!(DateTime::parse_from_rfc3339(last.split(' ').next().unwrap()).is_ok());
        let future = LogOptions {
            since: Some(Utc::now() + chrono::Duration::seconds(60)),
            ..Default::default()
        };
        assert_eq!(render(&text, &future), "");
    }

    #[test]
    fn long_lines_are_split_into_parts_and_joined_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = run_log(dir.path(), 3);
        let log = LogFile::create(&path, Rotation::default()).unwrap();
        let out = log.stream("stdout");
        let long = "x".repeat(MAX_LINE * 2 + 10);
        out.write(format!("{long}\n").as_bytes()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert_eq!(render(&text, &LogOptions::default()), format!("{long}\n"));
        let limited = LogOptions {
            limit_bytes: Some(5),
            ..Default::default()
        };
        assert_eq!(render(&text, &limited), "xxxxx");
    }

    #[test]
    fn logs_rotate_past_their_size_and_old_runs_go() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_size: 200,
            max_files: 3,
        };
        for run in 0..3 {
            std::fs::write(run_log(dir.path(), run), "old\n").unwrap();
        }
        let path = run_log(dir.path(), 3);
        let log = LogFile::create(&path, rotation).unwrap();
        // Runs 0 and 1 are gone; run 2 stays as the previous one.
        let names = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(dir.path()), ["2.log", "3.log"]);
        let out = log.stream("stdout");
        for n in 0..40 {
            out.write(format!("line {n}\n").as_bytes()).unwrap();
        }
        let files = names(dir.path());
        let rotated: Vec<&String> = files.iter().filter(|n| n.starts_with("3.log.")).collect();
        assert_eq!(rotated.len(), 2, "{files:?}");
        assert!(std::fs::metadata(&path).unwrap().len() <= 200);
        // The current file holds the latest lines.
        let current = render(
            &std::fs::read_to_string(&path).unwrap(),
            &LogOptions::default(),
        );
        assert!(current.ends_with("line 39\n"), "{current}");
    }
}
