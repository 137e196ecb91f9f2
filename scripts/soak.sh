#!/usr/bin/env bash
# The soak: a release server under churn on every door (joins, parts,
# quits, vanishing and reset clients, slow readers, refused input, expiring
# UDP members) while three bystanders check that none of their messages is
# lost, and the server's tasks, descriptors and memory are checked to come
# back to their baseline. See examples/soak/main.rs.
#
#   scripts/soak.sh [SECONDS] [CHURNERS_PER_DOOR]   (default: 1800 s, 8)
#
# The test suite runs it for 60 s; by hand, it runs for 30 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-1800}"
churners="${2:-8}"
cargo build --release --locked --quiet --bin sockchat --example soak
exec target/release/examples/soak --server target/release/sockchat \
    --seconds "$seconds" --churners "$churners"
