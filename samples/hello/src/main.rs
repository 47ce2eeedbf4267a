//! The smallest Skiff container: a `wasi:cli/run` component that greets whoever its
//! environment names, prints its arguments and environment, and exits.

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
    if let Ok(code) = std::env::var("EXIT_CODE") {
        std::process::exit(code.parse().unwrap_or(1));
    }
}
