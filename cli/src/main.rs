fn main() -> std::process::ExitCode {
    skiff_cli::run()
}
