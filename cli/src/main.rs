/// mimalloc: the server allocates and frees many small JSON values per request, where glibc's
/// allocator spends a fifth of the CPU time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    skiff_cli::run()
}
