//! The init container of the init-container sample: writes `$CONTENT` to `$TARGET` (in a volume
//! it shares with the app) and exits, so the app starts with its files in place.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "/work-dir/index.html".into());
    let content =
        std::env::var("CONTENT").unwrap_or_else(|_| "prepared by the init container".into());
    std::fs::write(&target, format!("{content}\n"))
        .unwrap_or_else(|e| panic!("writing {target}: {e}"));
    println!("wrote {target}");
}
