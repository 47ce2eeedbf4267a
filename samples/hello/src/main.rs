//! The smallest Skiff container: a `wasi:cli/run` component that greets whoever its
//! environment names and exits.

fn main() {
    let name = std::env::var("GREETING_NAME").unwrap_or_else(|_| "world".to_string());
    println!("hello, {name}");
}
