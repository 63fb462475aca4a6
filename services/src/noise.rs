//! Many distinct stacks: allocations kept at 64 × 64 call paths, each path its own pair
//! of functions (const-generic instances, so distinct return addresses). A report of such a
//! heap has thousands of stacks to symbolize and a JSON file of several MiB, so writing it
//! takes long enough for a signal, an `exit` or a `SIGKILL` to land in the middle.

use std::hint::black_box;

/// Where the allocations are kept.
pub type Kept = Vec<Box<[u8]>>;
type Leaf = fn(&mut Kept);
type Branch = fn(&mut Kept, Leaf);

/// Distinct paths: [`BRANCHES`] × [`LEAVES`].
pub const PATHS: usize = 64 * 64;

#[inline(never)]
fn leaf<const J: usize>(kept: &mut Kept) {
    kept.push(vec![J as u8; 64 + J].into_boxed_slice());
}

#[inline(never)]
fn branch<const K: usize>(kept: &mut Kept, leaf: Leaf) {
    leaf(kept);
    // Keeps the call from becoming a tail call, so this frame stays in the stack.
    black_box(K);
}

macro_rules! instances {
    ($f:ident as $ty:ty) => {
        instances!(@ $f as $ty;
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30
            31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57
            58 59 60 61 62 63)
    };
    (@ $f:ident as $ty:ty; $($n:literal)*) => {
        [$($f::<$n> as $ty),*]
    };
}

static LEAVES: [Leaf; 64] = instances!(leaf as Leaf);
static BRANCHES: [Branch; 64] = instances!(branch as Branch);

/// Allocates `rounds` blocks (64 to 127 bytes) at each of the [`PATHS`] paths and keeps
/// them in `kept`.
pub fn spread(kept: &mut Kept, rounds: usize) {
    kept.reserve(rounds * PATHS);
    for _ in 0..rounds {
        for branch in BRANCHES {
            for leaf in LEAVES {
                branch(kept, leaf);
            }
        }
    }
}
