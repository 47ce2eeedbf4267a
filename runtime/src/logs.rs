//! Container logs in the CRI format the kubelet keeps under /var/log/pods: one file per run of a
//! container (`N.log`, N the restart count), each line `TIMESTAMP STREAM TAG MESSAGE`, where TAG
//! is `F` for a full line and `P` for part of a longer one. Reading them back serves
//! `kubectl logs` with `--timestamps`, `--tail`, `--since` and `--previous`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};

/// Longest line kept whole; longer output is split into `P` parts, as the kubelet does at 16 KiB.
const MAX_LINE: usize = 16 * 1024;

/// One run's log file, shared by its stdout and stderr writers.
#[derive(Clone)]
pub struct LogFile {
    file: Arc<Mutex<std::fs::File>>,
}

impl LogFile {
    /// Creates (truncating) the log of one run.
    pub fn create(path: &Path) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(LogFile {
            file: Arc::new(Mutex::new(std::fs::File::create(path)?)),
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
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(&line)
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
        let log = LogFile::create(&path).unwrap();
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
        let log = LogFile::create(&path).unwrap();
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
}
