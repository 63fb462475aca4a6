//! Names for inlined frames when the debug info has short names only
//! (`debug = "line-tables-only"`): DWARF then names a function by its last path segment
//! (`get_or_render`, `{closure#0}`, `reserve<u64, …>`), with no module path.
//!
//! The outermost function at an address is named by the symbol table instead (see
//! `resolver`) where its debug-info name is short ([`is_short_name`]). An inlined function
//! has no symbol of its own; its module path is added only where the stack itself proves
//! it, never guessed from the file: a closure
//! `{closure#N}` called by a function whose name carries exactly one closure type
//! `path::{closure_env#N}` among its generic arguments (rustc names a closure's type by
//! its full path, as in `or_insert_with<…, app::cache::{impl#0}::get::{closure_env#0}>`)
//! is that closure: `app::cache::{impl#0}::get::{closure#0}`. Any other short name is kept
//! as it is: with line tables, its file and line say where it is.

/// Whether `name` is a debug-info short name (its path, before any generic arguments,
/// has no `::`: `main`, `{closure#0}`, `reserve<u64, …>`) rather than a full path
/// (`app::main`, `<T as core::fmt::Debug>::fmt`, `std::rt::lang_start_internal`). The
/// outermost frame of an address with a short name takes the symbol table's name.
pub(crate) fn is_short_name(name: &str) -> bool {
    if name.starts_with('<') {
        return false;
    }
    let path = name.split('<').next().unwrap_or(name);
    !path.contains("::")
}

/// The full name of the inlined closure `name` (`{closure#N}`), proven by its caller's
/// name `caller` (the next frame out at the same address); `None` where `name` is not a
/// bare closure name, or the caller does not name exactly one such closure type.
pub(crate) fn qualify_closure(name: &str, caller: &str) -> Option<String> {
    let index = name.strip_prefix("{closure#")?.strip_suffix('}')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let marker = format!("::{{closure_env#{index}}}");
    let mut found: Option<&str> = None;
    for (at, _) in caller.match_indices(&marker) {
        let before = &caller[..at];
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "_:{}#".contains(c)))
            .map_or(0, |i| i + 1);
        let path = &before[start..];
        if path.is_empty() || path.starts_with(':') {
            return None;
        }
        match found {
            Some(other) if other != path => return None,
            _ => found = Some(path),
        }
    }
    found.map(|path| format!("{path}::{{closure#{index}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_told_from_full_paths() {
        for short in [
            "main",
            "{closure#0}",
            "get_or_render",
            "reserve_rehash<(u64, alloc::vec::Vec<u8, alloc::alloc::Global>), alloc::alloc::Global>",
            "do_alloc<alloc::alloc::Global>",
        ] {
            assert!(is_short_name(short), "{short}");
        }
        for full in [
            "closure_site::main",
            "std::rt::lang_start::{{closure}}",
            "<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop",
            "std::panicking::catch_unwind::<i32, &dyn core::ops::function::Fn<()>>",
            "hashbrown::raw::RawTable<T,A>::reserve_rehash",
        ] {
            assert!(!is_short_name(full), "{full}");
        }
    }

    #[test]
    fn a_closure_is_named_by_the_closure_type_its_caller_takes() {
        let caller = "or_insert_with<u64, alloc::vec::Vec<u8, alloc::alloc::Global>, \
                      alloc::alloc::Global, closure_site::cache::{impl#0}::get_or_fill::{closure_env#0}>";
        assert_eq!(
            qualify_closure("{closure#0}", caller).as_deref(),
            Some("closure_site::cache::{impl#0}::get_or_fill::{closure#0}")
        );
        // Another closure index is not that closure.
        assert_eq!(qualify_closure("{closure#1}", caller), None);
    }

    #[test]
    fn ambiguous_or_absent_closure_types_prove_nothing() {
        let two = "join<app::a::{closure_env#0}, app::b::{closure_env#0}>";
        assert_eq!(qualify_closure("{closure#0}", two), None);
        let same_twice = "zip<app::a::{closure_env#0}, app::a::{closure_env#0}>";
        assert_eq!(
            qualify_closure("{closure#0}", same_twice).as_deref(),
            Some("app::a::{closure#0}")
        );
        assert_eq!(qualify_closure("{closure#0}", "main"), None);
        assert_eq!(qualify_closure("get_or_render", "main"), None);
        assert_eq!(qualify_closure("{closure#}", "x::{closure_env#}"), None);
        assert_eq!(qualify_closure("{closure#0}", "f<::{closure_env#0}>"), None);
    }
}
