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
    if let Ok(code) = std::env::var("EXIT_CODE") {
        std::process::exit(code.parse().unwrap_or(1));
    }
}
