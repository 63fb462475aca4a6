//! A `Scope` in a binary whose global allocator is not the tracker says so, instead of
//! measuring nothing.

#[test]
#[should_panic(expected = "needs the tracker as the global allocator")]
fn a_scope_without_the_tracker_explains_itself() {
    let _scope = alloc_tracker::Scope::start();
}
