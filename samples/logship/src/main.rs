//! The sidecar of the sidecar and adapter samples: follows `$LOG_FILE` and ships each new line
//! to stdout. With `FORMAT=json` it adapts the app's `key=value` lines into JSON objects (the
//! adapter pattern).

use std::io::{BufRead, BufReader, Seek, SeekFrom};

fn to_json(line: &str) -> String {
    let mut fields = Vec::new();
    let mut rest = line.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, next)) => (value, next),
                None => (quoted, ""),
            },
            None => after.split_once(' ').unwrap_or((after, "")),
        };
        fields.push(format!(
            "\"{}\":\"{}\"",
            key.trim(),
            value.replace('"', "\\\"")
        ));
        rest = next.trim_start();
    }
    format!("{{{}}}", fields.join(","))
}

fn main() {
    let path = std::env::var("LOG_FILE").unwrap_or_else(|_| "/var/log/app.log".into());
    let json = std::env::var("FORMAT").is_ok_and(|f| f == "json");
    // The app may not have created the file yet.
    let file = loop {
        match std::fs::File::open(&path) {
            Ok(file) => break file,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut position = 0;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => {
                // A WASI input stream stays at its end once it reached it: seek back to where
                // the next line starts to read what was appended since.
                std::thread::sleep(std::time::Duration::from_millis(100));
                reader
                    .seek(SeekFrom::Start(position))
                    .unwrap_or_else(|e| panic!("seeking in {path}: {e}"));
            }
            Ok(n) if line.ends_with('\n') => {
                position += n as u64;
                let text = line.trim_end();
                if json {
                    println!("{}", to_json(text));
                } else {
                    println!("{text}");
                }
            }
            Ok(_) => {
                // Half a line: read it again whole once the rest is written.
                std::thread::sleep(std::time::Duration::from_millis(50));
                reader
                    .seek(SeekFrom::Start(position))
                    .unwrap_or_else(|e| panic!("seeking in {path}: {e}"));
            }
            Err(e) => panic!("reading {path}: {e}"),
        }
    }
}
