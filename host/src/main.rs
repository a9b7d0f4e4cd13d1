//! The `dem` binary; everything lives in `dem_host::cli`.

fn main() -> std::process::ExitCode {
    dem_host::cli::main()
}
