//! Leak-pattern demos for alloc-tracker.
