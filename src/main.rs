//! The `twinql` command-line tool.

/// mimalloc instead of the system allocator: loading, row rendering and writes allocate and
/// free many small blocks from several threads (measured in `benches/README.md`, "Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(twinql::cli::main());
}
