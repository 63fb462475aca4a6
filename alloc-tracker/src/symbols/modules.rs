//! The modules loaded in this process (the executable, shared libraries, the vDSO), read
//! from the dynamic loader with `dl_iterate_phdr`: each one's load bias, file, loaded
//! segments and GNU build id (from its `PT_NOTE` in memory: no file I/O). One registry for
//! everything that maps an address to its module: the resolver
//! ([`super::resolver`]) and pprof's `Mapping` rows ([`Module::mappings`]).

use object::elf::{self, FileHeader64};
use object::read::elf::NoteIterator;
use object::{Endianness, NativeEndian, Object};
use std::ffi::CStr;
use std::path::{Path, PathBuf};

/// One `PT_LOAD` segment, at its run-time addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// First address (bias + `p_vaddr`).
    pub(crate) start: u64,
    /// One past the last address (`start + p_memsz`).
    pub(crate) end: u64,
    /// Offset in the file of the segment's first byte (`p_offset`).
    pub(crate) file_offset: u64,
    /// `PF_R` / `PF_W` / `PF_X` bits.
    pub(crate) flags: u32,
}

impl Segment {
    /// Whether the segment holds code.
    pub(crate) fn is_executable(&self) -> bool {
        self.flags & libc::PF_X != 0
    }
}

/// One loaded module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Module {
    /// The file as the loader names it; for the executable, the path `/proc/self/exe`
    /// points at (the loader gives it no name). `linux-vdso.so.1` has no file.
    pub(crate) path: PathBuf,
    /// Whether this is the executable.
    pub(crate) is_executable: bool,
    /// The load bias: run-time address minus the file's virtual address.
    pub(crate) bias: u64,
    /// The `PT_LOAD` segments, in address order.
    pub(crate) segments: Vec<Segment>,
    /// The GNU build id, read from the module's notes in memory (empty where it has none).
    pub(crate) build_id: Vec<u8>,
}

/// One executable mapping as `/proc/self/maps` shows it and pprof's `Mapping` wants it:
/// page-aligned addresses and file offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    /// First address.
    pub(crate) start: u64,
    /// One past the last address.
    pub(crate) limit: u64,
    /// Offset in the file of the first byte.
    pub(crate) offset: u64,
}

impl Module {
    /// Whether `address` lies in one of the module's segments.
    pub(crate) fn contains(&self, address: u64) -> bool {
        self.segments
            .iter()
            .any(|s| s.start <= address && address < s.end)
    }

    /// The lowest address of the module.
    pub(crate) fn start(&self) -> u64 {
        self.segments.first().map_or(self.bias, |s| s.start)
    }

    /// The build id in lower-case hex (empty where there is none).
    pub(crate) fn build_id_hex(&self) -> String {
        self.build_id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether the module is part of the C runtime: glibc's libraries and dynamic loader,
    /// musl's, `libgcc_s`. Their frames are never a site (they call the program or are
    /// called by it), so they are named from their symbol tables, without reading their
    /// debug info (glibc's, where `libc6-dbg` installs it, is ~30 MiB once loaded).
    pub(crate) fn is_c_runtime(&self) -> bool {
        const C_RUNTIME: [&str; 10] = [
            "libc.so",
            "libc-2.",
            "ld-linux",
            "ld64.so",
            "ld-musl",
            "libm.so",
            "libpthread.so",
            "libdl.so",
            "librt.so",
            "libgcc_s.so",
        ];
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        C_RUNTIME.iter().any(|prefix| name.starts_with(prefix))
    }

    /// Whether the module is backed by a file (not the vDSO).
    pub(crate) fn has_file(&self) -> bool {
        self.path.is_absolute()
    }

    /// The file to open for this module's symbols: `/proc/self/exe` for the executable
    /// (it still opens the file that was loaded after a rebuild replaced the path),
    /// otherwise its path.
    pub(crate) fn open_path(&self) -> &Path {
        if self.is_executable {
            Path::new("/proc/self/exe")
        } else {
            &self.path
        }
    }

    /// Its executable segments as `/proc/self/maps` lines them (page-aligned).
    pub(crate) fn mappings(&self) -> impl Iterator<Item = Mapping> + '_ {
        let page = page_size();
        self.segments
            .iter()
            .filter(|s| s.is_executable())
            .map(move |s| Mapping {
                start: s.start & !(page - 1),
                limit: s.end.div_ceil(page) * page,
                offset: s.file_offset & !(page - 1),
            })
    }
}

/// The loaded modules, ordered by address.
#[derive(Clone, Debug, Default)]
pub(crate) struct Modules {
    modules: Vec<Module>,
}

impl Modules {
    /// The modules loaded now (`dl_iterate_phdr`). Allocates (one `Vec` per module) from
    /// inside the loader's callback, which holds the loader's lock: the allocator must
    /// not call `dlopen` (the tracker's allocations under its reentrancy guard don't).
    pub(crate) fn loaded() -> Self {
        let mut modules: Vec<Module> = Vec::new();
        // SAFETY: `collect` matches the callback type `dl_iterate_phdr` expects, and the
        // pointer passed is a live `&mut Vec<Module>` for the whole call.
        unsafe {
            libc::dl_iterate_phdr(Some(collect), (&raw mut modules).cast());
        }
        // The executable's path; the kernel appends " (deleted)" once a rebuild replaced it.
        let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
        let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(path) => PathBuf::from(path),
            None => exe,
        };
        for module in &mut modules {
            if module.is_executable {
                module.path = exe.clone();
            }
        }
        modules.sort_by_key(Module::start);
        Self { modules }
    }

    /// The index (in address order) of the module whose segments hold `address`.
    pub(crate) fn index_of(&self, address: u64) -> Option<usize> {
        let after = self.modules.partition_point(|m| m.start() <= address);
        (0..after)
            .rev()
            .find(|&i| self.modules[i].contains(address))
    }

    /// The module at `index` (in address order).
    pub(crate) fn get(&self, index: usize) -> Option<&Module> {
        self.modules.get(index)
    }

    /// How many modules there are.
    pub(crate) fn len(&self) -> usize {
        self.modules.len()
    }

    /// Every module, in address order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Module> {
        self.modules.iter()
    }
}

/// The `dl_iterate_phdr` callback: appends the module described by `info` to the
/// `Vec<Module>` behind `data`.
unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the loader passes a valid `dl_phdr_info` for the duration of the call, and
    // `data` is the `&mut Vec<Module>` that `Modules::loaded` passed.
    let (info, modules) = unsafe { (&*info, &mut *data.cast::<Vec<Module>>()) };
    let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: the loader guarantees `dlpi_phnum` headers at `dlpi_phdr`.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let name = if info.dlpi_name.is_null() {
        Vec::new()
    } else {
        // SAFETY: a non-null `dlpi_name` is a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_bytes()
            .to_vec()
    };
    let bias = info.dlpi_addr;
    let mut module = Module {
        // The executable is the first module the loader reports (glibc gives it no name,
        // static musl `/proc/self/exe`; its path is read from /proc below).
        is_executable: modules.is_empty(),
        path: PathBuf::from(String::from_utf8_lossy(&name).into_owned()),
        bias,
        segments: Vec::new(),
        build_id: Vec::new(),
    };
    for phdr in phdrs {
        let start = bias.wrapping_add(phdr.p_vaddr);
        match phdr.p_type {
            libc::PT_LOAD => module.segments.push(Segment {
                start,
                end: start.wrapping_add(phdr.p_memsz),
                file_offset: phdr.p_offset,
                flags: phdr.p_flags,
            }),
            libc::PT_NOTE if module.build_id.is_empty() => {
                let Ok(len) = usize::try_from(phdr.p_memsz) else {
                    continue;
                };
                // SAFETY: a `PT_NOTE` segment of a loaded module lies inside one of its
                // `PT_LOAD` segments (mapped readable for as long as the module is loaded,
                // which the loader's lock guarantees during this call).
                let notes = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
                module.build_id = build_id_in_notes(notes, phdr.p_align).unwrap_or_default();
            }
            _ => {}
        }
    }
    module.segments.sort_by_key(|s| s.start);
    modules.push(module);
    0
}

/// The `NT_GNU_BUILD_ID` descriptor among the ELF notes `notes` (native byte order).
fn build_id_in_notes(notes: &[u8], align: u64) -> Option<Vec<u8>> {
    let mut notes =
        NoteIterator::<FileHeader64<NativeEndian>>::new(NativeEndian, align, notes).ok()?;
    while let Ok(Some(note)) = notes.next() {
        if note.name() == elf::ELF_NOTE_GNU && note.n_type(NativeEndian) == elf::NT_GNU_BUILD_ID {
            return Some(note.desc().to_vec());
        }
    }
    None
}

/// The GNU build id of the ELF file at `path`, read from the file (its headers and notes
/// only): for modules known from `/proc/<pid>/maps` rather than from the loader, and to
/// check that a file on disk is the one loaded.
pub(crate) fn file_build_id(path: &Path) -> Option<Vec<u8>> {
    let map = super::mmap::Mmap::open(path)?;
    let file = object::read::elf::ElfFile64::<Endianness, _>::parse(map.bytes()).ok()?;
    Some(file.build_id().ok()??.to_vec())
}

/// Whether `header` is the start of a 64-bit ELF file (used by tests).
#[cfg(test)]
fn is_elf64(data: &[u8]) -> bool {
    use object::read::elf::FileHeader;
    FileHeader64::<Endianness>::parse(data).is_ok()
}

fn page_size() -> u64 {
    // SAFETY: `sysconf` has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/self/maps`' executable, file-backed lines as `(start, limit, offset, file)`.
    /// Under qemu-user with a sysroot (`QEMU_LD_PREFIX`, the CI's aarch64 run), /proc shows
    /// the host's paths of the guest's libraries, the loader their paths in the guest: the
    /// sysroot is taken off.
    fn proc_maps() -> Vec<(u64, u64, u64, String)> {
        let sysroot = std::env::var("QEMU_LD_PREFIX").unwrap_or_default();
        let sysroot = sysroot.trim_end_matches('/');
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (start, limit) = fields.next()?.split_once('-')?;
                let perms = fields.next()?;
                let offset = fields.next()?;
                let file = fields.nth(2)?;
                let file = match file.strip_prefix(sysroot) {
                    Some(guest) if !sysroot.is_empty() && guest.starts_with('/') => guest,
                    _ => file,
                }
                .to_string();
                (perms.contains('x') && file.starts_with('/')).then(|| {
                    (
                        u64::from_str_radix(start, 16).unwrap(),
                        u64::from_str_radix(limit, 16).unwrap(),
                        u64::from_str_radix(offset, 16).unwrap(),
                        file,
                    )
                })
            })
            .collect()
    }

    #[test]
    fn executable_mappings_match_proc_maps() {
        let modules = Modules::loaded();
        let mut ours: Vec<(u64, u64, u64, String)> = modules
            .iter()
            .filter(|m| m.has_file())
            .flat_map(|m| {
                let file = std::fs::canonicalize(&m.path).unwrap();
                m.mappings()
                    .map(move |map| (map.start, map.limit, map.offset, file.display().to_string()))
            })
            .collect();
        ours.sort();
        let mut maps = proc_maps();
        maps.sort();
        assert_eq!(ours, maps);
    }

    #[test]
    fn build_ids_in_memory_match_the_files() {
        let modules = Modules::loaded();
        let exe = modules.iter().find(|m| m.is_executable).unwrap();
        assert_eq!(exe.path, std::env::current_exe().unwrap());
        assert!(exe.build_id.len() >= 16, "{:?}", exe.build_id_hex());
        let mut checked = 0;
        for module in modules.iter().filter(|m| m.has_file()) {
            assert_eq!(
                file_build_id(module.open_path()).unwrap_or_default(),
                module.build_id,
                "{}",
                module.path.display()
            );
            checked += 1;
        }
        // A static C library (musl's `crt-static`) is part of the executable.
        let least = if cfg!(target_feature = "crt-static") { 1 } else { 2 };
        assert!(checked >= least, "the executable and libc at least");
        assert!(file_build_id(Path::new("/nonexistent")).is_none());
    }

    #[test]
    fn addresses_find_their_module() {
        let modules = Modules::loaded();
        let here = addresses_find_their_module as *const () as usize as u64;
        let find = |address| modules.get(modules.index_of(address)?);
        let exe = find(here).unwrap();
        assert!(exe.is_executable);
        // A static C library (musl's `crt-static`) is part of the executable.
        if !cfg!(target_feature = "crt-static") {
            let libc_fn = libc::malloc as *const () as usize as u64;
            let libc_module = find(libc_fn).unwrap();
            assert!(!libc_module.is_executable);
            assert!(libc_module.path.to_string_lossy().contains("libc"));
            assert!(libc_module.is_c_runtime());
        }
        assert!(!exe.is_c_runtime());
        assert!(find(0).is_none());
        // The module's start is the first byte of its ELF header (`p_offset` 0 segment).
        let header = exe.segments[0].start as *const u8;
        // SAFETY: the first `PT_LOAD` segment of the executable is mapped readable and is
        // at least an ELF header long.
        let header = unsafe { std::slice::from_raw_parts(header, 64) };
        assert!(is_elf64(header));
    }

    #[test]
    fn build_id_notes_are_read_defensively() {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[0xde, 0xad, 0xbe, 0]);
        assert_eq!(build_id_in_notes(&note, 4), Some(vec![0xde, 0xad, 0xbe]));
        assert_eq!(build_id_in_notes(&note[..14], 4), None);
        assert_eq!(build_id_in_notes(&[0xff; 12], 4), None);
        assert_eq!(build_id_in_notes(&note, 16), None, "an invalid alignment");
    }
}
