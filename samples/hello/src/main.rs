//! The smallest Skiff container: a `wasi:cli/run` component that greets whoever its
//! environment names, prints its arguments and environment, and exits. `SPIN` makes it busy
//! forever, `SPIN_MS` for that long, `EXIT_CODE` sets its exit code.

fn main() {
    let name = std::env::var("GREETING_NAME").unwrap_or_else(|_| "world".to_string());
    println!("hello, {name}");
    for (i, arg) in std::env::args().enumerate() {
        println!("arg {i}: {arg}");
    }
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (key, value) in vars {
        println!("env {key}={value}");
    }
    eprintln!("hello on stderr");
    // A busy guest, for stopping one that never yields by itself.
    if std::env::var("SPIN").is_ok() {
        let mut n: u64 = 0;
        loop {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
            if n == 42 {
                println!("{n}");
            }
        }
    }
    // Busy for SPIN_MS milliseconds of wall-clock time, then says how much work it got done:
    // what a CPU limit slows down.
    if let Some(ms) = std::env::var("SPIN_MS").ok().and_then(|v| v.parse().ok()) {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        let (mut n, mut rounds): (u64, u64) = (0, 0);
        while std::time::Instant::now() < until {
            for _ in 0..10_000 {
                n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            rounds += 1;
        }
        println!("spun {rounds} rounds");
    }
    if let Ok(code) = std::env::var("EXIT_CODE") {
        std::process::exit(code.parse().unwrap_or(1));
    }
}
