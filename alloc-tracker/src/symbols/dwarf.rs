//! One module's debug info, read with `addr2line` (the version `backtrace` pulls, without
//! its `loader`): the frames at an address, inlined ones first, with function, file and
//! line.
//!
//! The module's file is mapped (`mmap`, read-only, not copied), or its separate debug file
//! (`/usr/lib/debug/.build-id/…`, else `.gnu_debuglink`, accepted only with the module's
//! build id) where the file has no `.debug_info`, with the supplementary file of a
//! `dwz`-compressed one (`.gnu_debugaltlink`). Compressed sections (`SHF_COMPRESSED` zlib,
//! GNU `.zdebug_*`) are inflated into the heap. Split DWARF (`.dwo`, `.dwp`; off by
//! default for Rust on Linux) and zstd-compressed sections are not read (as `backtrace`
//! without features): such addresses get the symbol table's name only.

use super::mmap::Mmap;
use super::modules::{file_build_id, Module};
use super::symtab::demangle;
use addr2line::gimli;
use object::{CompressionFormat, Object, ObjectSection};
use std::path::{Path, PathBuf};

/// One frame the debug info knows at an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DwarfFrame {
    /// The function, demangled without hash (`{:#}`); `None` where the debug info has no
    /// name for it.
    pub(crate) function: Option<String>,
    /// The source file, as the compiler recorded it.
    pub(crate) file: Option<String>,
    /// The line in `file`.
    pub(crate) line: Option<u32>,
}

type Slice = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// The debug info of one module, over memory it owns.
pub(crate) struct Dwarf {
    // Dropped first: borrows from the memory below.
    context: addr2line::Context<Slice>,
    _maps: Vec<Mmap>,
    _inflated: Vec<Box<[u8]>>,
}

impl Dwarf {
    /// Reads `module`'s debug info (from its file or its separate debug file, whichever
    /// has it, with the module's build id); `None` where there is none.
    pub(crate) fn load(module: &Module) -> Option<Dwarf> {
        if !module.has_file() {
            return None;
        }
        let map = Mmap::open(module.open_path())?;
        let file = object::File::parse(map.bytes()).ok()?;
        if file.build_id().ok().flatten().unwrap_or_default() != &module.build_id[..] {
            return None; // Not the file that was loaded.
        }
        let (map, debug_path) = if file.section_by_name(".debug_info").is_some() {
            (map, module.path.clone())
        } else {
            let path = separate_debug_file(module, &file)?;
            (Mmap::open(&path)?, path)
        };
        let mut inflated = Vec::new();
        let file = object::File::parse(map.bytes()).ok()?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let mut dwarf = gimli::Dwarf::load(|id| -> Result<Slice, ()> {
            Ok(gimli::EndianSlice::new(
                section(&file, id.name(), &mut inflated),
                endian,
            ))
        })
        .ok()?;
        let mut maps = Vec::new();
        if let Some((sup_map, sup_file)) = supplementary(&file, &debug_path) {
            dwarf
                .load_sup(|id| -> Result<Slice, ()> {
                    Ok(gimli::EndianSlice::new(
                        section(&sup_file, id.name(), &mut inflated),
                        endian,
                    ))
                })
                .ok()?;
            drop(sup_file);
            maps.push(sup_map);
        }
        drop(file);
        maps.push(map);
        Some(Dwarf {
            context: addr2line::Context::from_dwarf(dwarf).ok()?,
            _maps: maps,
            _inflated: inflated,
        })
    }

    /// Appends the frames at `probe` (a virtual address of the file) to `frames`,
    /// innermost first; nothing where the debug info does not cover it.
    pub(crate) fn frames(&self, probe: u64, frames: &mut Vec<DwarfFrame>) {
        let Ok(mut iter) = self.context.find_frames(probe).skip_all_loads() else {
            return;
        };
        while let Ok(Some(frame)) = iter.next() {
            let function = match frame.function.as_ref().map(|f| f.raw_name()) {
                Some(Ok(name)) => Some(demangle(&name)),
                _ => None,
            };
            let location = frame.location.as_ref();
            frames.push(DwarfFrame {
                function,
                file: location.and_then(|l| l.file).map(str::to_string),
                line: location.and_then(|l| l.line),
            });
        }
    }
}

/// The data of section `name` (inflated into `inflated` if compressed; empty if absent or
/// unreadable), with the lifetime of the memory that holds it.
fn section(file: &object::File<'_>, name: &str, inflated: &mut Vec<Box<[u8]>>) -> &'static [u8] {
    let Some(compressed) = file
        .section_by_name(name)
        .and_then(|s| s.compressed_data().ok())
    else {
        return &[];
    };
    let data: &[u8] = match compressed.format {
        CompressionFormat::None => compressed.data,
        CompressionFormat::Zlib => {
            let Ok(size) = usize::try_from(compressed.uncompressed_size) else {
                return &[];
            };
            let mut buffer = vec![0u8; size].into_boxed_slice();
            if inflate(compressed.data, &mut buffer).is_none() {
                return &[];
            }
            inflated.push(buffer);
            inflated.last().map_or(&[], |b| &b[..])
        }
        _ => return &[],
    };
    // SAFETY: `data` lies in a file mapping or an inflated buffer that the `Dwarf` built
    // from these sections owns (`_maps`, `_inflated`). Neither moves its bytes when the
    // `Dwarf` moves, and both are dropped after `context`, the only holder of these
    // slices (fields drop in declaration order).
    unsafe { std::slice::from_raw_parts(data.as_ptr(), data.len()) }
}

/// Inflates zlib data `input` into exactly `output`.
fn inflate(input: &[u8], output: &mut [u8]) -> Option<()> {
    use miniz_oxide::inflate::core::inflate_flags::{
        TINFL_FLAG_PARSE_ZLIB_HEADER, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    };
    use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let (status, read, written) = decompress(
        &mut DecompressorOxide::new(),
        input,
        output,
        0,
        TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF | TINFL_FLAG_PARSE_ZLIB_HEADER,
    );
    (status == TINFLStatus::Done && read == input.len() && written == output.len()).then_some(())
}

/// Where distributions install a module's separate debug file:
/// `/usr/lib/debug/.build-id/ab/cdef….debug`.
pub(crate) fn debug_file_by_build_id(build_id: &[u8]) -> Option<PathBuf> {
    let (first, rest) = build_id.split_first()?;
    let rest: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    let path = PathBuf::from(format!("/usr/lib/debug/.build-id/{first:02x}/{rest}.debug"));
    path.is_file().then_some(path)
}

/// The separate debug file of `module` (same build id): by build id under
/// `/usr/lib/debug/.build-id/`, else by `.gnu_debuglink` beside the file, in its
/// `.debug/`, or under `/usr/lib/debug/` (gdb's search order).
fn separate_debug_file(module: &Module, file: &object::File<'_>) -> Option<PathBuf> {
    let same_build = |path: &Path| file_build_id(path).as_deref() == Some(&module.build_id[..]);
    debug_file_by_build_id(&module.build_id)
        .into_iter()
        .chain(debuglink_candidates(module, file).into_iter().flatten())
        .find(|path| path.is_file() && same_build(path))
}

/// Where the file named by `file`'s `.gnu_debuglink` may be.
fn debuglink_candidates(module: &Module, file: &object::File<'_>) -> Option<[PathBuf; 3]> {
    let (name, _crc) = file.gnu_debuglink().ok()??;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let real = std::fs::canonicalize(&module.path).ok()?;
    let dir = real.parent()?;
    Some([
        dir.join(name),
        dir.join(".debug").join(name),
        Path::new("/usr/lib/debug")
            .join(dir.strip_prefix("/").ok()?)
            .join(name),
    ])
}

/// The supplementary file a `dwz`-compressed debug file refers to (`.gnu_debugaltlink`),
/// mapped and parsed, if it is there with the build id asked for.
fn supplementary(file: &object::File<'_>, path: &Path) -> Option<(Mmap, object::File<'static>)> {
    let (name, build_id) = file.gnu_debugaltlink().ok()??;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let path = path.parent()?.join(name);
    let map = Mmap::open(&path)?;
    // SAFETY: the mapping's bytes stay where they are until `map` is dropped, which the
    // caller keeps alive (in `Dwarf::_maps`) as long as anything parsed from them.
    let bytes: &'static [u8] =
        unsafe { std::slice::from_raw_parts(map.bytes().as_ptr(), map.bytes().len()) };
    let sup = object::File::parse(bytes).ok()?;
    (sup.build_id().ok()?? == build_id).then_some((map, sup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_sections_are_inflated_exactly() {
        let compressed = [
            120, 156, 203, 72, 205, 201, 201, 215, 81, 200, 64, 162, 0, 68, 40, 6, 213,
        ];
        let mut output = [0u8; 19];
        assert_eq!(inflate(&compressed, &mut output), Some(()));
        assert_eq!(&output, b"hello, hello, hello");
        let mut short = [0u8; 18];
        assert_eq!(inflate(&compressed, &mut short), None);
        assert_eq!(inflate(&compressed[..10], &mut output), None);
    }
}
