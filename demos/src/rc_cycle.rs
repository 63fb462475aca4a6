//! Pattern 9, reference-count cycles: each request parses a document into a tree of
//! `Rc` nodes whose children point back at their parent with a strong `Rc`. When the
//! request drops the tree, every parent is still owned by its children and every child
//! by its parent: the counts never reach zero and the whole tree leaks
//! (`rc-cycle-leak`). The fix makes the back-pointer a `Weak` (`rc-cycle-fixed`).
//!
//! The two trees are two small node types side by side; both load a node's content at
//! the same line (`leak-site`).

use crate::cli::{self, Demo, Knob, Opts, Progress};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};

/// The rc-cycle demo's command line.
pub const DEMO: Demo = Demo {
    name: "rc-cycle",
    leak: "each request builds a tree whose children hold strong Rc pointers to their parent",
    fix: "each request builds a tree whose children point to their parent with Weak",
    unit: "documents",
    count: Knob {
        long: "count",
        default: "3000",
        help: "Documents to parse and drop (each a tree of one root and 15 sections)",
    },
    size: Knob {
        long: "size",
        default: "4k",
        help: "Bytes of content in each node",
    },
    seconds: "6",
    keep: None,
};

/// Sections under each document's root.
pub const SECTIONS: u64 = 15;

/// Nodes alive now, of either kind.
static NODES_ALIVE: AtomicU64 = AtomicU64::new(0);

/// Loads the content of one node of a document.
#[inline(never)]
fn load_content(doc: u64, size: usize) -> Vec<u8> {
    let content = vec![cli::fill(doc); size]; // leak-site
    NODES_ALIVE.fetch_add(1, Ordering::Relaxed);
    content
}

/// The leaky tree: children own their parent.
mod strong {
    use super::*;

    /// A node whose `parent` is a strong reference.
    pub struct Node {
        pub content: Vec<u8>,
        pub parent: RefCell<Option<Rc<Node>>>,
        pub children: RefCell<Vec<Rc<Node>>>,
    }

    impl Drop for Node {
        fn drop(&mut self) {
            NODES_ALIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Parses document `doc`: a root and its sections, each pointing back at the root.
    pub fn parse(doc: u64, size: usize) -> Rc<Node> {
        let root = Rc::new(Node {
            content: load_content(doc, size),
            parent: RefCell::new(None),
            children: RefCell::new(Vec::new()),
        });
        for _ in 0..SECTIONS {
            let section = Rc::new(Node {
                content: load_content(doc, size),
                parent: RefCell::new(Some(Rc::clone(&root))), // the cycle
                children: RefCell::new(Vec::new()),
            });
            root.children.borrow_mut().push(section);
        }
        root
    }
}

/// The fixed tree: children point to their parent without owning it.
mod weak {
    use super::*;

    /// A node whose `parent` is a weak reference.
    pub struct Node {
        pub content: Vec<u8>,
        pub parent: RefCell<Weak<Node>>,
        pub children: RefCell<Vec<Rc<Node>>>,
    }

    impl Drop for Node {
        fn drop(&mut self) {
            NODES_ALIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Parses document `doc`: a root and its sections, each pointing back at the root.
    pub fn parse(doc: u64, size: usize) -> Rc<Node> {
        let root = Rc::new(Node {
            content: load_content(doc, size),
            parent: RefCell::new(Weak::new()),
            children: RefCell::new(Vec::new()),
        });
        for _ in 0..SECTIONS {
            let section = Rc::new(Node {
                content: load_content(doc, size),
                parent: RefCell::new(Rc::downgrade(&root)), // the fix
                children: RefCell::new(Vec::new()),
            });
            root.children.borrow_mut().push(section);
        }
        root
    }
}

/// Handles one request: parses document `doc`, reads it through the back-pointers, and
/// drops it. Returns the bytes read.
fn handle_request(doc: u64, size: usize, leaky: bool) -> usize {
    if leaky {
        let root = strong::parse(doc, size);
        let children = root.children.borrow();
        children
            .iter()
            .filter_map(|c| c.parent.borrow().as_ref().map(|p| p.content.len()))
            .sum()
    } else {
        let root = weak::parse(doc, size);
        let children = root.children.borrow();
        children
            .iter()
            .filter_map(|c| c.parent.borrow().upgrade().map(|p| p.content.len()))
            .sum()
    } // `root` is dropped here: the weak tree is freed, the strong one is not
}

/// Parses and drops `opts.count` documents, then exits.
pub fn run(opts: &Opts, leaky: bool) -> ! {
    let size = usize::try_from(opts.size).expect("--size fits in memory");
    let mut progress = Progress::new(&DEMO, opts);
    let describe = |dropped: u64| {
        format!(
            "Documents dropped: {dropped}, nodes still alive: {}",
            NODES_ALIVE.load(Ordering::Relaxed)
        )
    };
    let mut read = 0usize;
    for doc in 1..=opts.count {
        read += handle_request(doc, size, leaky);
        progress.step(doc, || describe(doc));
    }
    progress.finish(opts.count, || describe(opts.count));
    println!(
        "Read {} through parent pointers",
        cli::human_bytes(read as u64)
    );
    cli::exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope_check::LeakSite;
    use alloc_tracker::Scope;

    /// Bytes of each node's content.
    const SIZE: usize = 4096;

    /// The leaked tree stays in this test binary for good: nothing can reach it.
    #[test]
    fn leaky_document_outlives_its_request() {
        let scope = Scope::start();
        handle_request(1, SIZE, true);
        let usage = scope.finish();
        // A root and its sections, each with its content.
        let nodes = 1 + SECTIONS;
        LeakSite::of("rc_cycle.rs").assert_leaks(&usage, nodes * SIZE as u64, nodes);
    }

    #[test]
    fn fixed_document_retains_nothing() {
        let scope = Scope::start();
        handle_request(1, SIZE, false);
        scope.finish().assert_retains_at_most(0);
    }
}
