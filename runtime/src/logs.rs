//! Container logs in the CRI format the kubelet keeps under /var/log/pods: one file per run of a
//! container (`N.log`, N the restart count), each line `TIMESTAMP STREAM TAG MESSAGE`, where TAG
//! is `F` for a full line and `P` for part of a longer one. Reading them back serves
//! `kubectl logs` with `--timestamps`, `--tail`, `--since` and `--previous`.
//!
//! A run's log is rotated as the kubelet rotates it: past `containerLogMaxSize` (10 MiB) the
//! file is renamed `N.log.YYYYMMDD-HHMMSS` and a new `N.log` begun, keeping at most
//! `containerLogMaxFiles` (5) files in all; `kubectl logs` reads the current file. Only the
//! last two runs of a container keep their logs (the current one and `--previous`).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{Stream, StreamExt};

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

/// The logs being written now: a run's log is live from its creation until its last writer
/// is dropped, which is when a followed log ends.
#[derive(Debug, Clone, Default)]
pub struct LiveLogs(Arc<Mutex<HashSet<PathBuf>>>);

impl LiveLogs {
    /// Whether the run whose log is at `path` is still writing it.
    pub fn contains(&self, path: &Path) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(path)
    }

    fn set(&self, path: &Path, live: bool) {
        let mut paths = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if live {
            paths.insert(path.to_path_buf());
        } else {
            paths.remove(path);
        }
    }
}

/// The file a run writes to now. It is opened at the run's first line, not before: an idle
/// container holds no file open, so a node's thousands of idle pods do not use up its file
/// descriptors.
struct Current {
    file: Option<std::fs::File>,
    path: PathBuf,
    size: u64,
    rotation: Rotation,
    live: LiveLogs,
}

impl Drop for Current {
    fn drop(&mut self) {
        self.live.set(&self.path, false);
    }
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
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let prefix = format!("{name}.");
        let rotated = || -> std::io::Result<Vec<PathBuf>> {
            let mut rotated: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect();
            rotated.sort();
            Ok(rotated)
        };
        // Rotated files' names sort by age: a second rotation within a second takes the
        // nanoseconds too, so it sorts after every earlier one.
        let now = Utc::now();
        let mut aside = self
            .path
            .with_file_name(format!("{name}.{}", now.format("%Y%m%d-%H%M%S")));
        if rotated()?.last().is_some_and(|latest| *latest >= aside) {
            aside = self
                .path
                .with_file_name(format!("{name}.{}", now.format("%Y%m%d-%H%M%S%.9f")));
        }
        std::fs::rename(&self.path, &aside)?;
        self.file = Some(std::fs::File::create(&self.path)?);
        self.size = 0;
        let rotated = rotated()?;
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
    /// Starts the log of one run (removing what a run of the same number left), rotated by
    /// `rotation` and known to `live` until its last writer is dropped. The logs of the runs
    /// before the previous one are removed. The file and its directory are made at the run's
    /// first line: a container that writes nothing costs the node no file.
    pub fn create(path: &Path, rotation: Rotation, live: &LiveLogs) -> std::io::Result<LogFile> {
        let absent = |result: std::io::Result<()>| match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if let Some(dir) = path.parent() {
            absent(prune_runs(dir, path))?;
        }
        live.set(path, true);
        Ok(LogFile {
            file: Arc::new(Mutex::new(Current {
                file: None,
                path: path.to_path_buf(),
                size: 0,
                rotation,
                live: live.clone(),
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
        let file = match &mut current.file {
            Some(file) => file,
            None => {
                if let Some(dir) = current.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let opened = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&current.path)?;
                current.file.insert(opened)
            }
        };
        file.write_all(&line)?;
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

/// Removes the files of the runs before the one previous to `new` (a run log path), and what
/// an earlier run of the same number left.
fn prune_runs(dir: &Path, new: &Path) -> std::io::Result<()> {
    let Some(run) = new.file_name().and_then(|n| run_of(&n.to_string_lossy())) else {
        return Ok(());
    };
    for entry in std::fs::read_dir(dir)?.flatten() {
        if run_of(&entry.file_name().to_string_lossy()).is_some_and(|r| r + 1 < run || r == run) {
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

/// One message as `kubectl logs` shows it: its time and its text, `P` parts joined.
type Message = (String, String);

/// Turns CRI log bytes into messages as they arrive: a line not ended yet, and the `P` parts
/// of a message whose `F` line has not come, wait for the rest.
#[derive(Default)]
struct Messages {
    carry: Vec<u8>,
    pending: Option<Message>,
}

impl Messages {
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Message>) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.carry.extend_from_slice(&bytes[..end]);
            bytes = &bytes[end + 1..];
            let raw = std::mem::take(&mut self.carry);
            let raw = String::from_utf8_lossy(&raw);
            let Some(line) = parse(&raw) else { continue };
            let entry = self
                .pending
                .get_or_insert_with(|| (line.time.to_string(), String::new()));
            entry.1.push_str(line.message);
            if !line.partial {
                out.extend(self.pending.take());
            }
        }
        self.carry.extend_from_slice(bytes);
    }
}

/// Writes messages out as `kubectl logs` shows them, with their times when asked.
fn format(messages: &[Message], options: &LogOptions) -> String {
    let mut out = String::new();
    for (time, message) in messages {
        if options.timestamps {
            out.push_str(time);
            out.push(' ');
        }
        out.push_str(message);
        out.push('\n');
    }
    out
}

/// Drops the messages written before `since`.
fn keep_since(messages: &mut Vec<Message>, since: Option<DateTime<Utc>>) {
    if let Some(since) = since {
        messages.retain(|(time, _)| {
            DateTime::parse_from_rfc3339(time).is_ok_and(|t| t.with_timezone(&Utc) >= since)
        });
    }
}

/// Cuts `text` to at most `limit` bytes, on a character boundary.
fn cut(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// Renders a CRI log as `kubectl logs` shows it: messages (joined across `P` parts), each
/// prefixed with its RFC 3339 time when asked, filtered by `since`, the last `tail_lines` only,
/// cut at `limit_bytes`.
pub fn render(text: &str, options: &LogOptions) -> String {
    let mut messages = Vec::new();
    Messages::default().feed(text.as_bytes(), &mut messages);
    first_chunk(messages, options)
}

fn first_chunk(mut messages: Vec<Message>, options: &LogOptions) -> String {
    keep_since(&mut messages, options.since);
    if let Some(tail) = options.tail_lines {
        let skip = messages.len().saturating_sub(tail);
        messages.drain(..skip);
    }
    let mut out = format(&messages, options);
    if let Some(limit) = options.limit_bytes {
        cut(&mut out, limit);
    }
    out
}

/// How often a followed log is read again.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// A log's text as it is sent: chunks, or the error that ended it.
pub type LogStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A followed log: the file it reads (kept open across rotation, so the lines written to a
/// file just rotated aside are still read), and what was not sent yet.
struct Tail {
    path: PathBuf,
    /// The file being read and its inode; none while the run has written nothing.
    file: Option<std::fs::File>,
    inode: Option<u64>,
    messages: Messages,
    options: LogOptions,
    /// Bytes still allowed by `limit_bytes`.
    left: Option<usize>,
    live: LiveLogs,
}

impl Tail {
    /// The messages written since the last read: the rest of the file being read, then, when
    /// it was rotated aside, the files written after it, the current one last.
    fn read_new(&mut self) -> std::io::Result<Vec<Message>> {
        // Rotated aside, or there at last.
        let rotated =
            |tail: &Tail| std::fs::metadata(&tail.path).is_ok_and(|m| Some(m.ino()) != tail.inode);
        let mut fresh = Vec::new();
        let mut again = rotated(self);
        self.drain(&mut fresh)?;
        // A rotation while the successors are read moves the file just opened aside: go on
        // from it until the file read is the current one.
        while again {
            let before = self.inode;
            for next in self.successors()? {
                let Ok(file) = std::fs::File::open(&next) else {
                    continue;
                };
                self.inode = Some(file.metadata()?.ino());
                self.file = Some(file);
                self.drain(&mut fresh)?;
            }
            again = self.inode != before && rotated(self);
        }
        keep_since(&mut fresh, self.options.since);
        Ok(fresh)
    }

    /// The files written after the one being read: its successors among the files rotated
    /// aside (their names sort by time), then the current file. When the file being read is
    /// gone from the directory, only the current one; when none was read yet, all of them.
    fn successors(&self) -> std::io::Result<Vec<PathBuf>> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!("{name}.");
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut aside: Vec<(String, u64, PathBuf)> = std::fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let inode = e.metadata().ok()?.ino();
                name.starts_with(&prefix).then(|| (name, inode, e.path()))
            })
            .collect();
        aside.sort();
        let after = match self.inode {
            None => 0,
            Some(read) => aside
                .iter()
                .position(|(_, inode, _)| *inode == read)
                .map_or(aside.len(), |i| i + 1),
        };
        let mut files: Vec<PathBuf> = aside.drain(after..).map(|(_, _, path)| path).collect();
        files.push(self.path.clone());
        Ok(files)
    }

    fn drain(&mut self, out: &mut Vec<Message>) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        self.messages.feed(&bytes, out);
        Ok(())
    }

    /// The next chunk to send, within what `limit_bytes` leaves; None once nothing is left.
    fn take(&mut self, mut text: String) -> Option<String> {
        if let Some(left) = self.left.as_mut() {
            cut(&mut text, *left);
            *left -= text.len();
        }
        Some(text).filter(|t| !t.is_empty())
    }
}

/// The log at `path` as `kubectl logs` asks for it: the messages so far (`tail_lines` and
/// `since` applied), then, when `follow` is given, the messages written later, until the run
/// writing them ends. `limit_bytes` bounds all of it. NotFound when the run left no log.
pub fn open(
    path: &Path,
    options: &LogOptions,
    follow: Option<&LiveLogs>,
) -> std::io::Result<LogStream> {
    // Asked before the read: a run that ended before it has all its lines in.
    let follow = follow.filter(|live| live.contains(path));
    let mut file = match std::fs::File::open(path) {
        Ok(file) => Some(file),
        // A run that has written nothing has no file yet: followed, it is read once it has.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && follow.is_some() => None,
        Err(e) => return Err(e),
    };
    let mut messages = Messages::default();
    let mut so_far = Vec::new();
    let mut bytes = Vec::new();
    if let Some(file) = file.as_mut() {
        file.read_to_end(&mut bytes)?;
    }
    messages.feed(&bytes, &mut so_far);
    let first = first_chunk(so_far, options);
    let Some(live) = follow else {
        return Ok(Box::pin(futures::stream::iter([Ok(Bytes::from(first))])));
    };
    let mut tail = Tail {
        path: path.to_path_buf(),
        inode: file
            .as_ref()
            .map(|f| f.metadata().map(|m| m.ino()))
            .transpose()?,
        file,
        messages,
        options: options.clone(),
        left: options.limit_bytes,
        live: live.clone(),
    };
    let first = tail.take(first);
    let done = tail.left == Some(0);
    let first = futures::stream::iter(first.map(|t| Ok(Bytes::from(t))));
    let rest = futures::stream::unfold((tail, done), |(mut tail, done)| async move {
        if done {
            return None;
        }
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            // Asked before the read: a run that ended before it has all its lines in.
            let live = tail.live.contains(&tail.path);
            let (back, fresh) = tokio::task::spawn_blocking(move || {
                let fresh = tail.read_new();
                (tail, fresh)
            })
            .await
            .ok()?;
            tail = back;
            let fresh = match fresh {
                Ok(fresh) => fresh,
                Err(e) => return Some((Err(e), (tail, true))),
            };
            let text = format(&fresh, &tail.options);
            let chunk = tail.take(text);
            let done = !live || tail.left == Some(0);
            match chunk {
                Some(chunk) => return Some((Ok(Bytes::from(chunk)), (tail, done))),
                None if done => return None,
                None => continue,
            }
        }
    });
    Ok(Box::pin(first.chain(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_become_timestamped_lines_and_render_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = run_log(dir.path(), 0);
        let log = LogFile::create(&path, Rotation::default(), &LiveLogs::default()).unwrap();
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
        let log = LogFile::create(&path, Rotation::default(), &LiveLogs::default()).unwrap();
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

    /// How many of this process's file descriptors are open on `path`.
    fn open_on(path: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
            .count()
    }

    #[test]
    fn a_run_makes_and_holds_its_log_only_once_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let container = dir.path().join("web");
        let path = run_log(&container, 0);
        let log = LogFile::create(&path, Rotation::default(), &LiveLogs::default()).unwrap();
        assert!(!container.exists(), "an idle run makes no file");
        log.stream("stdout").write(b"first\n").unwrap();
        assert_eq!(open_on(&path), 1);
        log.stream("stderr").write(b"second\n").unwrap();
        assert_eq!(open_on(&path), 1);
        drop(log);
        assert_eq!(open_on(&path), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(render(&text, &LogOptions::default()), "first\nsecond\n");
    }

    #[tokio::test]
    async fn a_followed_run_that_wrote_nothing_yet_is_read_once_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = run_log(&dir.path().join("web"), 1);
        let live = LiveLogs::default();
        let log = LogFile::create(&path, Rotation::default(), &live).unwrap();
        // Not followed, a quiet run's log is not there; followed, it is waited for.
        let quiet = open(&path, &LogOptions::default(), None);
        assert_eq!(
            quiet.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
        let followed = open(&path, &LogOptions::default(), Some(&live)).unwrap();
        log.stream("stdout").write(b"at last\n").unwrap();
        drop(log);
        let text = tokio::time::timeout(Duration::from_secs(10), collect(followed))
            .await
            .expect("the follow ends with the run");
        assert_eq!(text, "at last\n");
    }

    #[test]
    fn a_new_run_starts_afresh_and_prunes_all_but_the_previous_run() {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveLogs::default();
        for run in 0..3 {
            let log = LogFile::create(&run_log(dir.path(), run), Rotation::default(), &live);
            log.unwrap().stream("stdout").write(b"line\n").unwrap();
        }
        // Run 2 again (a node that lost its record of it): what it left is gone.
        let again = LogFile::create(&run_log(dir.path(), 2), Rotation::default(), &live).unwrap();
        again.stream("stdout").write(b"again\n").unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["1.log", "2.log"]);
        let text = std::fs::read_to_string(run_log(dir.path(), 2)).unwrap();
        assert_eq!(render(&text, &LogOptions::default()), "again\n");
    }

    /// Collects a stream's text until it ends.
    async fn collect(mut stream: LogStream) -> String {
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        text
    }

    #[tokio::test]
    async fn a_followed_log_streams_across_rotation_until_its_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = run_log(dir.path(), 0);
        let live = LiveLogs::default();
        let rotation = Rotation {
            max_size: 300,
            max_files: 3,
        };
        let log = LogFile::create(&path, rotation, &live).unwrap();
        let out = log.stream("stdout");
        for n in 0..3 {
            out.write(format!("early {n}\n").as_bytes()).unwrap();
        }
        let options = LogOptions {
            tail_lines: Some(1),
            ..Default::default()
        };
        let mut followed = open(&path, &options, Some(&live)).unwrap();
        let mut text = String::new();
        // Batches of lines that rotate the file at least once each, each read before the next.
        for batch in 0..4 {
            for n in batch * 6..batch * 6 + 6 {
                out.write(format!("later {n}\n").as_bytes()).unwrap();
            }
            let last = format!("later {}\n", batch * 6 + 5);
            while !text.ends_with(&last) {
                let chunk = tokio::time::timeout(Duration::from_secs(10), followed.next())
                    .await
                    .expect("new lines are sent")
                    .expect("the run goes on")
                    .unwrap();
                text.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        }
        // A long line, split in parts that rotate the file twice between two reads.
        let long = "y".repeat(MAX_LINE + 5);
        out.write(format!("{long}\n").as_bytes()).unwrap();
        assert!(live.contains(&path));
        drop(out);
        drop(log);
        assert!(
            !live.contains(&path),
            "a run's log is live until its writers go"
        );
        let rest = tokio::time::timeout(Duration::from_secs(10), collect(followed))
            .await
            .expect("the follow ends with the run");
        text.push_str(&rest);
        let mut expected = String::from("early 2\n");
        for n in 0..24 {
            expected.push_str(&format!("later {n}\n"));
        }
        expected.push_str(&long);
        expected.push('\n');
        assert_eq!(text, expected);
        // A finished run's log is read once, and `limit_bytes` bounds the follow.
        let limited = LogOptions {
            limit_bytes: Some(4),
            ..Default::default()
        };
        let text = collect(open(&path, &limited, Some(&live)).unwrap()).await;
        assert_eq!(text, long[..4]);
        let missing = open(&run_log(dir.path(), 9), &LogOptions::default(), None);
        assert_eq!(
            missing.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
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
        let log = LogFile::create(&path, rotation, &LiveLogs::default()).unwrap();
        // Runs 0 and 1 are gone; run 2 stays as the previous one; run 3 has no file until
        // its first line.
        let names = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(dir.path()), ["2.log"]);
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
