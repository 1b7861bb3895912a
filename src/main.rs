//! The `twinql` command-line tool.

/// Twin writes copy and free many small nodes; mimalloc does that several times faster than
/// the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(twinql::cli::main());
}
