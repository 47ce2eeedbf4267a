//! The app of the sidecar and adapter samples: appends a numbered line to `$LOG_FILE` (standard
//! output without it) every `$INTERVAL_MS` milliseconds (`$COUNT` lines, then exits; forever
//! without `$COUNT`). With no configuration at all it is a long-running app that logs, as the
//! workload samples want.

use std::io::Write;

fn main() {
    let interval: u64 = std::env::var("INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let count: Option<u64> = std::env::var("COUNT").ok().and_then(|v| v.parse().ok());
    let mut file: Box<dyn Write> = match std::env::var("LOG_FILE") {
        Ok(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("opening {path}: {e}")),
        ),
        Err(_) => Box::new(std::io::stdout()),
    };
    let mut n = 0;
    while count.is_none_or(|c| n < c) {
        n += 1;
        writeln!(file, "level=info msg=\"request served\" n={n}").expect("writing the log");
        file.flush().expect("flushing the log");
        std::thread::sleep(std::time::Duration::from_millis(interval));
    }
}
