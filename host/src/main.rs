//! The `hookbox` binary; everything lives in the library.

/// mimalloc instead of glibc's malloc: at half load glibc's allocator was
/// a quarter of the daemon's CPU (BENCHMARKS.md, issue 14, seventh round).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hookbox::cli::main()
}
