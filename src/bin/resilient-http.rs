//! The `resilient-http` command line: `cargo install resilient-http --features cli`, then
//! `resilient-http probe --help`. Its code is the library's `resilient_http::cli`.

fn main() -> std::process::ExitCode {
    resilient_http::cli::run(std::env::args_os())
}
