//! The loaded objects and their unwind tables, found in memory with `dl_iterate_phdr`.
//!
//! For every object (the executable, each shared library, the vDSO) the loader reports its
//! load bias and program headers. `PT_GNU_EH_FRAME` is `.eh_frame_hdr`: a sorted table of
//! (function start, FDE) searched in place, and a pointer to `.eh_frame`. Each executable
//! `PT_LOAD` segment is a code range. Nothing is copied and no file is read: the tables are
//! used where the loader mapped them. An object without `PT_GNU_EH_FRAME`, or whose header
//! cannot be parsed, is left out, so that a frame in it fails the unwind.
//!
//! The slices are `'static` although a `dlclose` can unmap them: a snapshot is only used
//! after checking that the loader's counters have not moved since it was taken (see
//! `pool`), and only for return addresses of live frames, whose objects stay loaded.

use gimli::{
    BaseAddresses, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, ParsedEhFrameHdr, Pointer,
};
use std::ops::Range;

/// The section data of a loaded object, read in place.
pub(super) type Bytes = EndianSlice<'static, LittleEndian>;

/// One executable segment of a loaded object, with the object's unwind tables.
pub(super) struct Code {
    /// Where the segment is mapped in this process.
    range: Range<u64>,
    /// The load bias: an address in this process is the address in the file plus this.
    pub(super) bias: u64,
    /// The parsed `.eh_frame_hdr`, whose table maps a function start to its FDE.
    pub(super) eh_frame_hdr: ParsedEhFrameHdr<Bytes>,
    /// `.eh_frame`, up to the end of the segment that holds it.
    pub(super) eh_frame: EhFrame<Bytes>,
    /// Section addresses (in the file), for the tables' relative pointers.
    pub(super) bases: BaseAddresses,
    /// Whether the object can never be unloaded (see [`is_permanent`]).
    pub(super) permanent: bool,
}

/// A snapshot of the loaded objects' code and unwind tables.
pub(super) struct Modules {
    /// Sorted by start address; segments never overlap.
    code: Vec<Code>,
    /// The loader's (loaded, unloaded) counters when the snapshot was taken.
    pub(super) counters: (u64, u64),
    /// The bits a code address can have: return addresses signed with pointer
    /// authentication (aarch64) lose the bits above.
    pub(super) address_mask: u64,
}

impl Modules {
    /// The code segment holding `address`.
    pub(super) fn find(&self, address: u64) -> Option<&Code> {
        let after = self
            .code
            .partition_point(|code| code.range.start <= address);
        let code = self.code.get(after.checked_sub(1)?)?;
        code.range.contains(&address).then_some(code)
    }
}

/// The loader's counts of objects loaded and unloaded so far (`dlpi_adds`, `dlpi_subs`):
/// when they have not moved, no object came or went. `None` if the loader does not say.
pub(super) fn loader_counters() -> Option<(u64, u64)> {
    let mut counters: Option<(u64, u64)> = None;
    // SAFETY: the callback only reads the `dl_phdr_info` the loader passes it, for the
    // duration of the call, and writes through `data`, which points to `counters`.
    unsafe {
        libc::dl_iterate_phdr(Some(read_counters), (&raw mut counters).cast());
    }
    counters
}

unsafe extern "C" fn read_counters(
    info: *mut libc::dl_phdr_info,
    size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the `Option<(u64, u64)>` of `loader_counters`, and `info` is valid
    // during this call (dl_iterate_phdr's contract).
    unsafe { *data.cast::<Option<(u64, u64)>>() = counters_of(&*info, size) };
    1 // the counters are the same in every entry: stop after the first
}

fn counters_of(info: &libc::dl_phdr_info, size: usize) -> Option<(u64, u64)> {
    // Older loaders pass a shorter struct without the counters.
    let needed = std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + 8;
    (size >= needed).then_some((info.dlpi_adds, info.dlpi_subs))
}

/// Scans the loaded objects and builds a snapshot; `None` if the loader does not report
/// its counters (then no snapshot could ever be checked). Allocates; takes the loader's
/// lock.
pub(super) fn scan() -> Option<Modules> {
    let mut found = Found {
        code: Vec::new(),
        counters: None,
    };
    // SAFETY: the callback reads the loader's `dl_phdr_info` during the call only, and
    // `data` points to `found`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), (&raw mut found).cast());
    }
    found.code.sort_by_key(|code| code.range.start);
    found.code.shrink_to_fit();
    let highest = found.code.iter().map(|c| c.range.end).max().unwrap_or(0);
    Some(Modules {
        code: found.code,
        counters: found.counters?,
        address_mask: u64::MAX >> highest.leading_zeros(),
    })
}

struct Found {
    code: Vec<Code>,
    counters: Option<(u64, u64)>,
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is `scan`'s `Found`; `info` and the program headers it points to are
    // valid during this call (dl_iterate_phdr's contract).
    let (found, info) = unsafe { (&mut *data.cast::<Found>(), &*info) };
    if found.counters.is_none() {
        found.counters = counters_of(info, size);
    }
    if info.dlpi_phdr.is_null() || info.dlpi_phnum == 0 {
        return 0;
    }
    // SAFETY: the loader passes `dlpi_phnum` program headers at `dlpi_phdr`.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    // SAFETY: `headers` are the object's own program headers and `dlpi_addr` its load bias,
    // so each `PT_LOAD` segment they describe is mapped.
    if let Some(tables) = unsafe { Tables::find(headers, info.dlpi_addr) } {
        let permanent = is_permanent(info, headers);
        for header in headers {
            if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0 {
                let start = info.dlpi_addr.wrapping_add(header.p_vaddr);
                let range = start..start.wrapping_add(header.p_memsz);
                found.code.push(tables.code(range, header.p_vaddr, permanent));
            }
        }
    }
    0
}

/// Whether an object can never be unloaded, so that the rules of its code hold for the
/// life of the process: the program itself, the dynamic loader, the vDSO, the C library
/// (which holds `dl_iterate_phdr`; a dependency of the program) and the object holding
/// this code (an unwind runs this code, so it is loaded; a tracker in a shared library also
/// pins itself). Other objects may have been loaded with `dlopen` and may be unloaded with
/// `dlclose` (the program's other dependencies could be told apart by their names; they
/// are rarely on a sampled stack, and are only checked more often).
fn is_permanent(info: &libc::dl_phdr_info, headers: &[libc::Elf64_Phdr]) -> bool {
    // SAFETY: getauxval has no preconditions.
    let (program, loader, vdso) = unsafe {
        (
            libc::getauxval(libc::AT_PHDR),
            libc::getauxval(libc::AT_BASE),
            libc::getauxval(libc::AT_SYSINFO_EHDR),
        )
    };
    let holds = |address: usize| {
        let address = address as u64;
        headers.iter().any(|h| {
            h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0 && {
                let start = info.dlpi_addr.wrapping_add(h.p_vaddr);
                (start..start.wrapping_add(h.p_memsz)).contains(&address)
            }
        })
    };
    let elf_header = headers
        .iter()
        .find(|h| h.p_type == libc::PT_LOAD)
        .map(|h| info.dlpi_addr.wrapping_add(h.p_vaddr.wrapping_sub(h.p_offset)));
    info.dlpi_phdr as u64 == program
        || (loader != 0 && elf_header == Some(loader))
        || (vdso != 0 && elf_header == Some(vdso))
        || holds(libc::dl_iterate_phdr as *const () as usize)
        || holds(is_permanent as *const () as usize)
}

/// An object's `.eh_frame_hdr` and `.eh_frame`.
struct Tables {
    bias: u64,
    hdr_svma: u64,
    parsed: ParsedEhFrameHdr<Bytes>,
    eh_frame_svma: u64,
    eh_frame: &'static [u8],
}

impl Tables {
    /// The tables of the object with these program headers and load bias, if it has them.
    ///
    /// # Safety
    /// `headers` must be the program headers of an object loaded at `bias`.
    unsafe fn find(headers: &[libc::Elf64_Phdr], bias: u64) -> Option<Self> {
        let header = headers.iter().find(|h| h.p_type == libc::PT_GNU_EH_FRAME)?;
        let hdr_svma = header.p_vaddr;
        // SAFETY: forwarded: the range lies in one of the object's readable segments.
        let hdr = unsafe { mapped(headers, bias, hdr_svma, Some(header.p_memsz))? };
        let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_svma);
        let parsed = EhFrameHdr::new(hdr, LittleEndian).parse(&bases, 8).ok()?;
        parsed.table()?; // no search table: nothing could be looked up
        let Pointer::Direct(eh_frame_svma) = parsed.eh_frame_ptr() else {
            return None;
        };
        // `.eh_frame` has no stated length here: it runs to the end of its segment at most.
        // SAFETY: as above.
        let eh_frame = unsafe { mapped(headers, bias, eh_frame_svma, None)? };
        Some(Self {
            bias,
            hdr_svma,
            parsed,
            eh_frame_svma,
            eh_frame,
        })
    }

    /// The unwind view of one executable segment mapped at `range`, at `text_svma` in the
    /// file.
    fn code(&self, range: Range<u64>, text_svma: u64, permanent: bool) -> Code {
        let mut eh_frame = EhFrame::new(self.eh_frame, LittleEndian);
        eh_frame.set_address_size(8);
        #[cfg(target_arch = "aarch64")]
        eh_frame.set_vendor(gimli::Vendor::AArch64);
        Code {
            range,
            bias: self.bias,
            eh_frame_hdr: self.parsed.clone(),
            eh_frame,
            bases: BaseAddresses::default()
                .set_eh_frame_hdr(self.hdr_svma)
                .set_eh_frame(self.eh_frame_svma)
                .set_text(text_svma),
            permanent,
        }
    }
}

/// The mapped bytes at file address `svma` of the object (`len` of them, or up to the end
/// of the segment): `None` unless they lie inside one readable `PT_LOAD` segment.
///
/// # Safety
/// `headers` must be the program headers of an object loaded at `bias`.
unsafe fn mapped(
    headers: &[libc::Elf64_Phdr],
    bias: u64,
    svma: u64,
    len: Option<u64>,
) -> Option<&'static [u8]> {
    let segment = headers.iter().find(|h| {
        h.p_type == libc::PT_LOAD
            && h.p_flags & libc::PF_R != 0
            && h.p_vaddr <= svma
            && svma < h.p_vaddr.saturating_add(h.p_memsz)
    })?;
    let available = segment.p_vaddr + segment.p_memsz - svma;
    let len = len.unwrap_or(available);
    if len > available {
        return None;
    }
    let start = bias.wrapping_add(svma) as *const u8;
    // SAFETY: `start .. start + len` lies inside a `PT_LOAD` segment of a loaded object,
    // which the loader mapped readable for the object's lifetime.
    Some(unsafe { std::slice::from_raw_parts(start, usize::try_from(len).ok()?) })
}
