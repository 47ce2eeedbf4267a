//! Allocates and touches memory a mebibyte at a time, reporting as it goes, until the node stops
//! it: with a memory limit it ends OOMKilled. With `HOLD_MIB` set it stops growing at that
//! many mebibytes and holds them.

fn main() {
    let step_ms: u64 = std::env::var("STEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let hold: Option<usize> = std::env::var("HOLD_MIB").ok().and_then(|v| v.parse().ok());
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        if hold.is_none_or(|limit| held.len() < limit) {
            held.push(vec![1u8; 1 << 20]);
            if held.len().is_multiple_of(8) || Some(held.len()) == hold {
                println!("holding {} MiB", held.len());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(step_ms));
    }
}
