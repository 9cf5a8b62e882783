//! The `hookbox` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    hookbox::cli::main()
}
