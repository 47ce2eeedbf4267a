//! Allocates and touches memory a mebibyte at a time, reporting as it goes, until the node stops
//! it: with a memory limit it ends OOMKilled.

fn main() {
    let step_ms: u64 = std::env::var("STEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 1 << 20]);
        if held.len().is_multiple_of(8) {
            println!("holding {} MiB", held.len());
        }
        std::thread::sleep(std::time::Duration::from_millis(step_ms));
    }
}
