//! The `twinql` command-line tool.

fn main() {
    std::process::exit(twinql::cli::main());
}
