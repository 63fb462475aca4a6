//! The shared module snapshot, a small pool of rule caches, and the unwind itself.
//!
//! - [`CURRENT`]: the newest snapshot of the loaded objects, behind a lock taken only to
//!   clone or replace the `Arc` (never while scanning).
//! - [`POOL`]: up to [`MAX_SLOTS`] slots, each a [`RuleCache`], a gimli context and the
//!   snapshot its rules came from. A thread takes its home slot with `try_lock`, or the
//!   next free one; when all are busy the unwind fails (the caller falls back to DWARF)
//!   instead of waiting, so an unwind never blocks on another thread's.
//!
//! Objects may come (`dlopen`) and go (`dlclose`), and another may then be mapped where one
//! was. So before an unwind reads a table (a cache miss) or uses a rule that may have gone
//! stale (one of an object that may be unloaded, or "unknown", which a later load may
//! cover), it reads the loader's counters once (`dl_iterate_phdr`, stopped at the first
//! object: ~30 ns). If an object was loaded or unloaded since the slot's snapshot, the slot
//! takes the newer snapshot (scanning if nobody has yet), forgets those rules, and the
//! unwind starts again. A rule never outlives the code it was derived from, a table is only
//! read while its object is known to be loaded, and a stack that stays in the objects that
//! are never unloaded (the program, the C library, the loader, the vDSO) costs no loader
//! call.

use super::cache::RuleCache;
use super::modules::{self, Modules};
use super::rules::{self, Context};
use super::start::{Stack, Start};
use crate::spin::{SpinGuard, SpinLock};
use crate::capture::Out;
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The most slots the pool ever uses.
pub(super) const MAX_SLOTS: usize = 16;

static CURRENT: SpinLock<Option<Arc<Modules>>> = SpinLock::new(None);
static POOL: [SpinLock<Option<Slot>>; MAX_SLOTS] = [const { SpinLock::new(None) }; MAX_SLOTS];
/// How many slots are in use: set once, from the number of CPUs.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static NEXT_HOME: AtomicUsize = AtomicUsize::new(0);
/// Module scans done so far.
static SCANS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's preferred slot, `usize::MAX` until first used. `const`, no destructor.
    static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// One cache of rules, for one snapshot.
struct Slot {
    modules: Arc<Modules>,
    cache: RuleCache,
    context: Box<Context>,
}


/// Restarts of one unwind after finding the snapshot stale.
const MAX_RESTARTS: usize = 2;

/// Why an attempt at an unwind stopped short.
enum Stop {
    /// A frame could not be unwound exactly.
    Failed,
    /// The loader's counters moved (to these) since the slot's snapshot: start again.
    Stale((u64, u64)),
}

/// Unwinds from `start` (registers read in `table::capture`), reading the stack up to
/// `stack_top`: `None` if the stack cannot be unwound exactly, or every slot is busy.
pub(super) fn unwind(start: &Start, stack_top: usize, out: &mut Out) -> Option<usize> {
    let mut guard = acquire()?;
    let slot = match &mut *guard {
        Some(slot) => slot,
        empty => empty.insert(Slot {
            modules: current(modules::loader_counters()?)?,
            cache: RuleCache::new()?,
            context: rules::new_context(),
        }),
    };
    let stack = Stack::new(start.sp, stack_top as u64)?;
    let mut checked = false;
    for _ in 0..=MAX_RESTARTS {
        match slot.walk(start, &stack, out, &mut checked) {
            Ok(len) => return Some(len),
            Err(Stop::Failed) => return None,
            Err(Stop::Stale(counters)) => {
                slot.modules = current(counters)?;
                slot.cache.forget_stale();
            }
        }
    }
    None
}

/// Builds the module snapshot now, so that the first unwind does not.
pub(super) fn init() {
    if let Some(counters) = modules::loader_counters() {
        current(counters);
    }
}

/// How many times the loaded objects were scanned.
pub(super) fn scans() -> usize {
    SCANS.load(Ordering::Relaxed)
}

/// Takes every lock of the pool and the snapshot (before `fork`).
pub(super) fn lock_all() {
    for slot in &POOL {
        slot.lock_raw();
    }
    CURRENT.lock_raw();
}

/// Releases the locks taken by [`lock_all`].
///
/// # Safety
/// [`lock_all`] must have been called by this thread (or by the parent, in a fork child).
pub(super) unsafe fn unlock_all() {
    // SAFETY: the caller guarantees that `lock_all` took these locks.
    unsafe {
        CURRENT.unlock_raw();
        for slot in POOL.iter().rev() {
            slot.unlock_raw();
        }
    }
}

/// A free slot, starting with this thread's home slot.
#[inline]
fn acquire() -> Option<SpinGuard<'static, Option<Slot>>> {
    let home = HOME.with(Cell::get);
    if let Some(guard) = POOL.get(home).and_then(SpinLock::try_lock) {
        return Some(guard);
    }
    acquire_other()
}

/// [`acquire`] for a thread without a home slot yet, or whose home slot is busy.
#[cold]
fn acquire_other() -> Option<SpinGuard<'static, Option<Slot>>> {
    let active = active_slots();
    let home = HOME.with(|home| {
        if home.get() == usize::MAX {
            home.set(NEXT_HOME.fetch_add(1, Ordering::Relaxed) % active);
        }
        home.get()
    });
    (0..active).find_map(|i| POOL[(home + i) % active].try_lock())
}

/// Slots in use: twice the CPUs online, from 2 to [`MAX_SLOTS`].
fn active_slots() -> usize {
    let known = ACTIVE.load(Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    // SAFETY: sysconf has no memory preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let active = usize::try_from(cpus)
        .unwrap_or(1)
        .saturating_mul(2)
        .clamp(2, MAX_SLOTS);
    ACTIVE.store(active, Ordering::Relaxed);
    active
}

/// The snapshot for these loader counters: the shared one if it matches, else a new scan
/// (made without holding any lock), which replaces the shared one if it is newer.
fn current(counters: (u64, u64)) -> Option<Arc<Modules>> {
    if let Some(modules) = CURRENT.lock().as_ref() {
        if modules.counters == counters {
            return Some(Arc::clone(modules));
        }
    }
    let fresh = Arc::new(modules::scan()?);
    SCANS.fetch_add(1, Ordering::Relaxed);
    let events = |m: &Modules| m.counters.0 + m.counters.1;
    let replaced = {
        let mut shared = CURRENT.lock();
        if shared.as_deref().is_none_or(|old| events(&fresh) >= events(old)) {
            shared.replace(Arc::clone(&fresh))
        } else {
            None
        }
    };
    drop(replaced); // freed outside the lock
    // A scan that raced with a load or unload may be newer than the counters read before
    // it: the next unwind then sees a difference and takes a newer one.
    Some(fresh)
}

impl Slot {
    /// Checks once per unwind (`checked`) that no object was loaded or unloaded since the
    /// slot's snapshot; `Err` with what the unwind must do otherwise.
    fn check_current(&self, checked: &mut bool) -> Result<(), Stop> {
        if !std::mem::replace(checked, true) {
            let counters = modules::loader_counters().ok_or(Stop::Failed)?;
            if counters != self.modules.counters {
                return Err(Stop::Stale(counters));
            }
        }
        Ok(())
    }

    /// One attempt at unwinding from `start` into `out`: how many return addresses it
    /// wrote, or why it stopped short (a frame without an exact rule, a read outside
    /// `stack`, a stale snapshot). A rule that may have gone stale (see
    /// [`rules::Rule::may_go_stale`]), and every new rule, is used only after checking the
    /// snapshot ([`Slot::resolve`], out of line: the loop itself is the warm path).
    fn walk(
        &mut self,
        start: &Start,
        stack: &Stack,
        out: &mut Out,
        checked: &mut bool,
    ) -> Result<usize, Stop> {
        let mask = self.modules.address_mask;
        let mut sp = start.sp;
        // The frame pointer, meaningful only while `fp_known`.
        let mut fp = start.fp;
        let mut fp_known = true;
        let mut lr = start.link_register();
        // The first frame is looked up at its PC; the others at their return address minus
        // one, which lies inside the call instruction.
        let mut lookup = start.pc;
        let mut len = 0;
        while len < out.len() {
            let rule = match self.cache.get(lookup) {
                Some(rule) if !rule.may_go_stale() => rule,
                cached => self.resolve(lookup, cached, checked)?,
            };
            if !rule.is_frame() {
                if rule.is_end() {
                    if rule.is_without_cfi() {
                        // The return address into it is not a frame of the stack.
                        len = len.saturating_sub(1);
                    }
                    break;
                }
                return Err(Stop::Failed);
            }
            let base = if !rule.cfa_from_fp() {
                sp
            } else if fp_known {
                fp
            } else {
                return Err(Stop::Failed);
            };
            let cfa = base.wrapping_add(rule.cfa_offset());
            // The caller's frame lies above this one, inside the stack.
            if cfa <= sp || cfa > stack.high {
                return Err(Stop::Failed);
            }
            let ra = match rule.ra_offset() {
                // Only the first frame's link register is known.
                0 => lr.ok_or(Stop::Failed)?,
                offset => stack
                    .read(cfa.wrapping_add_signed(offset))
                    .ok_or(Stop::Failed)?,
            };
            match rule.fp_offset() {
                0 => fp_known &= !rule.fp_undefined(),
                offset => {
                    fp = stack
                        .read(cfa.wrapping_add_signed(offset))
                        .ok_or(Stop::Failed)?;
                    fp_known = true;
                }
            }
            lr = None;
            sp = cfa;
            let ra = ra & mask;
            if ra == 0 {
                break; // the end of the stack, as DWARF unwinders take it
            }
            out[len] = MaybeUninit::new(ra as usize);
            len += 1;
            lookup = ra - 1;
        }
        Ok(len)
    }

    /// The rule for `lookup` when the cache has none (`cached` is `None`), or has one that
    /// may have gone stale: checks the snapshot first, then derives and caches a missing
    /// rule.
    #[cold]
    #[inline(never)]
    fn resolve(
        &mut self,
        lookup: u64,
        cached: Option<rules::Rule>,
        checked: &mut bool,
    ) -> Result<rules::Rule, Stop> {
        self.check_current(checked)?;
        if let Some(rule) = cached {
            return Ok(rule);
        }
        let rule = self
            .modules
            .find(lookup)
            .map_or(rules::Rule::UNKNOWN, |code| {
                rules::rule_for(code, lookup, &mut self.context)
            });
        self.cache.insert(lookup, rule);
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bounds stated in the module docs of `table`: 64 KiB of rules and a few KiB of
    /// gimli context per slot, at most about 1.1 MiB for all slots; about 250 bytes of
    /// snapshot per executable segment.
    #[test]
    fn memory_is_as_documented() {
        let slot = RuleCache::BYTES + std::mem::size_of::<Context>();
        let segment = std::mem::size_of::<modules::Code>();
        println!("one slot: {slot} bytes (context {}); one segment: {segment} bytes", std::mem::size_of::<Context>());
        assert!(std::mem::size_of::<Context>() <= 8 * 1024);
        assert!(MAX_SLOTS * slot <= 11 * (1 << 20) / 10, "{}", MAX_SLOTS * slot);
        assert!(segment <= 256, "{segment}");
    }
}
