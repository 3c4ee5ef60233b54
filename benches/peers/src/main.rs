//! The peers with the system allocator (`peers.sh` runs the naive baseline
//! with this one).

fn main() {
    trailship_peers::cli()
}
