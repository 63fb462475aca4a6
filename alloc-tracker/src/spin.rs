//! A minimal lock that never allocates and can be held across `fork`.
//!
//! The tracker's tables are sharded so that each lock is held for a few hundred nanoseconds
//! by whichever thread records or removes a sample; a spin-then-yield lock suits that and,
//! unlike `std::sync::Mutex` guards or `parking_lot` (which allocates while holding its
//! bucket locks), lets the fork handlers take every lock before `fork` and release it in
//! both processes after ([`SpinLock::lock_raw`] / [`SpinLock::unlock_raw`]).

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// A mutual-exclusion lock that spins briefly, then yields the CPU.
///
/// Each lock has its cache lines to itself (128 bytes: a pair of lines, which x86 cores
/// prefetch together): the tables' shards are arrays of locks, and two threads taking
/// neighbouring shards must not pass one line between their cores.
#[repr(align(128))]
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one thread at a time (acquire/release on `locked`),
// so sharing a `SpinLock<T>` between threads is sound whenever `T` may be sent between them.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked lock.
    pub(crate) const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, waiting as long as it takes.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        self.lock_raw();
        SpinGuard { lock: self }
    }

    /// Takes the lock if it is free right now; `None` if another thread holds it.
    #[inline]
    // Used by the table unwinder's pool, which exists only where the unwinder does.
    #[cfg_attr(
        not(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )),
        allow(dead_code)
    )]
    pub(crate) fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        // `then`, not `then_some`: a guard made before the test would be dropped when the
        // lock is taken, and its drop would release the holder's lock.
        self.try_lock_raw().then(|| SpinGuard { lock: self })
    }

    /// Takes the lock without a guard if it is free; pair a `true` with
    /// [`SpinLock::unlock_raw`].
    pub(crate) fn try_lock_raw(&self) -> bool {
        !self.locked.load(Ordering::Relaxed)
            && self
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Replaces the value and frees the lock, whoever held it, without dropping the old
    /// value (which its holder may have left half-changed): for a fork child whose parent
    /// forked while another thread held the lock. The old value is leaked.
    ///
    /// # Safety
    /// No thread may hold or use this lock: true in a fork child, whose only thread is the
    /// one that forked (and which did not hold it).
    pub(crate) unsafe fn reset_in_fork_child(&self, value: T) {
        // SAFETY: the caller guarantees that nobody else holds or reads the value; `write`
        // does not drop what it overwrites.
        unsafe { std::ptr::write(self.value.get(), value) };
        self.locked.store(false, Ordering::Release);
    }

    /// The value, for a thread that took the lock with [`SpinLock::lock_raw`].
    ///
    /// # Safety
    /// The calling thread holds the lock, and uses the reference only until it releases it;
    /// no other reference to the value is live.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get_mut_unchecked(&self) -> &mut T {
        // SAFETY: forwarded from the caller: this thread holds the lock, which excludes
        // every other access to the value.
        unsafe { &mut *self.value.get() }
    }

    /// The value, taken out of the lock.
    #[cfg(test)]
    pub(crate) fn into_inner(self) -> T {
        self.value.into_inner()
    }

    /// Takes the lock without a guard; pair with [`SpinLock::unlock_raw`]. Inline, one
    /// compare-and-swap when the lock is free; the waiting is out of line, so that callers
    /// need not save registers for a call they rarely make.
    #[inline]
    pub(crate) fn lock_raw(&self) {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
    }

    /// Waits for the lock and takes it: spins while it is held (reading, not writing, the
    /// flag), then yields the CPU.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            if !self.locked.load(Ordering::Relaxed)
                && self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Releases a lock taken with [`SpinLock::lock_raw`].
    ///
    /// # Safety
    /// The lock must be held, and nothing may still use a `SpinGuard` of it. After `fork`,
    /// the child may release locks that its parent's threads held: no other thread exists.
    pub(crate) unsafe fn unlock_raw(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Access to the locked value; releases the lock on drop.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while this thread holds the lock, and `&mut self`
        // makes this the only live reference through it.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard took the lock and is the only user of it.
        unsafe { self.lock.unlock_raw() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_concurrent_writers() {
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*lock.lock(), 40_000);
    }

    #[test]
    fn try_lock_fails_while_held() {
        let lock = SpinLock::new(1u8);
        let held = lock.lock();
        assert!(lock.try_lock().is_none());
        // The failed attempt left the holder's lock alone.
        assert!(
            lock.try_lock().is_none(),
            "a failed try_lock released the lock"
        );
        assert!(!lock.try_lock_raw());
        drop(held);
        assert_eq!(*lock.try_lock().expect("free again"), 1);
    }
}
