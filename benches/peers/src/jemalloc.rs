//! The peers with jemalloc as the global allocator, as Vector ships on
//! Linux: `peers.sh` runs the VRL path with this one. With the system
//! allocator the same path takes ~1.3x as long (benches/README.md,
//! session 33).

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    trailship_peers::cli()
}
