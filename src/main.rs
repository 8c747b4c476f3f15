/// mimalloc: polars allocates and frees large buffers at a high rate; with glibc's allocator
/// the 10M-record analysis bench took ~2.4 s instead of ~1.9 s (BENCHMARKS.md, "Analysis").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(sweep::cli::main());
}
