// The hot path makes many small objects (a new group's key and aggregates, partial sets,
// exchange buffers) on one worker thread and drops them on another; glibc's malloc spent ~13%
// of a `-w 2` run's cycles in `_int_malloc`, `unlink_chunk` and `_int_free` (perf).
// mimalloc's per-thread pages make that cheap; it holds more memory (BENCHMARKS.md, soak).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(logflow::cli::main());
}
