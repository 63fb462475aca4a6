//! The rule cache: each address's [`Rule`], found by a table lookup.
//!
//! Two-way set-associative, [`SETS`] sets (4,096 entries of 16 bytes: 64 KiB), indexed by a
//! multiplicative hash of the address. A miss inserts at way 0 and moves way 0 to way 1, so
//! each set keeps its two most recently inserted addresses. Rules that say "unknown" are
//! cached like the others, so code without usable CFI costs one lookup per sample.

use super::rules::Rule;

/// Sets in the cache (a power of two).
const SETS: usize = 2048;
const SET_BITS: u32 = SETS.trailing_zeros();

#[derive(Clone, Copy)]
struct Entry {
    /// The address looked up; 0 for an empty entry (no lookup is at address 0).
    key: u64,
    rule: Rule,
}

const EMPTY: Entry = Entry {
    key: 0,
    rule: Rule::UNKNOWN,
};

/// A fixed-size cache of rules by address.
pub(super) struct RuleCache {
    /// A fixed-size array, so that a masked index needs no bounds check.
    sets: Box<[[Entry; 2]; SETS]>,
}

impl RuleCache {
    /// Heap bytes of one cache.
    #[cfg(test)]
    pub(super) const BYTES: usize = SETS * 2 * std::mem::size_of::<Entry>();

    /// An empty cache (allocates its 64 KiB straight on the heap, never on the stack).
    /// Always `Some`: the slice made has `SETS` sets.
    pub(super) fn new() -> Option<Self> {
        let sets: Box<[[Entry; 2]]> = vec![[EMPTY; 2]; SETS].into_boxed_slice();
        Some(Self {
            sets: sets.try_into().ok()?,
        })
    }

    #[inline(always)]
    fn set(&self, key: u64) -> usize {
        (key ^ key >> SET_BITS) as usize & (SETS - 1)
    }

    /// The rule cached for `key`.
    #[inline(always)]
    pub(super) fn get(&self, key: u64) -> Option<Rule> {
        let [first, second] = &self.sets[self.set(key)];
        if first.key == key {
            Some(first.rule)
        } else if second.key == key {
            Some(second.rule)
        } else {
            None
        }
    }

    /// Caches `rule` for `key` (not 0), evicting the older of its set's two entries.
    pub(super) fn insert(&mut self, key: u64, rule: Rule) {
        let index = self.set(key);
        let set = &mut self.sets[index];
        set[1] = set[0];
        set[0] = Entry { key, rule };
    }

    /// Forgets every rule that may no longer hold (the loaded objects changed).
    pub(super) fn forget_stale(&mut self) {
        for set in self.sets.iter_mut() {
            let kept = set.map(|entry| {
                if entry.rule.may_go_stale() {
                    EMPTY
                } else {
                    entry
                }
            });
            *set = if kept[0].key == 0 {
                [kept[1], EMPTY]
            } else {
                kept
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_two_latest_of_a_set() {
        let mut cache = RuleCache::new().unwrap();
        let rule = Rule::UNKNOWN;
        // Three keys of one set.
        let first = 0x5555_0001_u64;
        let set = cache.set(first);
        let mut same_set = (first + 1..).filter(|&k| cache.set(k) == set);
        let (second, third) = (same_set.next().unwrap(), same_set.next().unwrap());
        assert_eq!(cache.get(first), None);
        cache.insert(first, rule);
        cache.insert(second, rule);
        assert_eq!(cache.get(first), Some(rule));
        assert_eq!(cache.get(second), Some(rule));
        cache.insert(third, rule);
        assert_eq!(cache.get(first), None, "the oldest is evicted");
        assert_eq!(cache.get(second), Some(rule));
        assert_eq!(cache.get(third), Some(rule));
        cache.forget_stale();
        assert_eq!(cache.get(third), None, "an unknown rule may go stale");

        // A rule of an object that is never unloaded outlives a change of the objects.
        cache.insert(first, Rule::END);
        cache.insert(second, Rule::UNKNOWN);
        cache.forget_stale();
        assert_eq!(cache.get(first), Some(Rule::END));
        assert_eq!(cache.get(second), None);
        assert_eq!(RuleCache::BYTES, 64 * 1024);
    }
}
