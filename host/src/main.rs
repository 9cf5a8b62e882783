//! The `hookbox` binary; everything lives in the library.

/// mimalloc instead of glibc's malloc: at half load glibc's allocator was
/// a quarter of the daemon's CPU (BENCHMARKS.md, issue 14, seventh round).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // First thing: mimalloc's huge pages cost more than they bring here
    // (see the function's doc).
    hookbox::daemon::disable_transparent_huge_pages();
    hookbox::cli::main()
}
