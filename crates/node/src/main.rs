//! The `dem` binary; everything lives in `dem_node::cli`.

fn main() -> std::process::ExitCode {
    dem_node::cli::main()
}
