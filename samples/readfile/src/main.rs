//! Prints the content of `$FILE` at start and again whenever it changes, checking every
//! `$INTERVAL_MS` milliseconds: the app of the init-container sample, and the reader of the
//! ConfigMap-as-files sample (which sees the ConfigMap's edits without a restart). Exits after
//! `$ROUNDS` checks when set.

fn main() {
    let path = std::env::var("FILE").unwrap_or_else(|_| "/config/greeting".into());
    let interval: u64 = std::env::var("INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rounds: Option<u64> = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok());
    let mut last: Option<String> = None;
    let mut round = 0;
    while rounds.is_none_or(|r| round < r) {
        round += 1;
        let now = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("<{e}>"));
        if last.as_ref() != Some(&now) {
            println!("{path}: {}", now.trim_end());
            last = Some(now);
        }
        std::thread::sleep(std::time::Duration::from_millis(interval));
    }
}
