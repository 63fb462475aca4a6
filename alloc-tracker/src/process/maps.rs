//! The executable mappings of this process and the GNU build ids of their files, for the
//! `Mapping` rows of pprof profiles (so that viewers can match a profile to its binaries).

use crate::export::pprof::MemoryMapping;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

/// The executable, file-backed mappings of this process (from `/proc/self/maps`), with the
/// build id of each file. Empty where `/proc` is not there.
pub(crate) fn process_mappings() -> Vec<MemoryMapping> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut build_ids: HashMap<String, String> = HashMap::new();
    let mut mappings = Vec::new();
    for line in maps.lines() {
        let Some(mut mapping) = parse_maps_line(line) else {
            continue;
        };
        let build_id = build_ids
            .entry(mapping.file.clone())
            .or_insert_with(|| elf_build_id(&mapping.file).unwrap_or_default());
        mapping.build_id = build_id.clone();
        mappings.push(mapping);
    }
    mappings
}

/// One line of `/proc/<pid>/maps`, if it maps a file executable.
fn parse_maps_line(line: &str) -> Option<MemoryMapping> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let _device = fields.next()?;
    let _inode = fields.next()?;
    let file = fields.collect::<Vec<_>>().join(" ");
    if !perms.contains('x') || !file.starts_with('/') {
        return None;
    }
    let (start, limit) = range.split_once('-')?;
    Some(MemoryMapping {
        start: u64::from_str_radix(start, 16).ok()?,
        limit: u64::from_str_radix(limit, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        file,
        build_id: String::new(),
    })
}

/// The GNU build id of an ELF file (64-bit, little-endian), in hex.
fn elf_build_id(path: &str) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let u16_at =
        |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u32_at =
        |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let phoff = u64_at(&header, 32)?;
    let phentsize = u64::from(u16_at(&header, 54)?);
    let phnum = u64::from(u16_at(&header, 56)?);
    const PT_NOTE: u32 = 4;
    for i in 0..phnum.min(512) {
        let mut ph = [0u8; 56];
        file.seek(SeekFrom::Start(
            phoff.checked_add(i.checked_mul(phentsize)?)?,
        ))
        .ok()?;
        file.read_exact(&mut ph).ok()?;
        if u32_at(&ph, 0)? != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(&ph, 8)?, u64_at(&ph, 32)?.min(1 << 16));
        let mut notes = vec![0u8; usize::try_from(size).ok()?];
        file.seek(SeekFrom::Start(offset)).ok()?;
        if file.read_exact(&mut notes).is_err() {
            continue;
        }
        if let Some(id) = build_id_note(&notes) {
            return Some(id);
        }
    }
    None
}

/// The `NT_GNU_BUILD_ID` descriptor among ELF notes, in hex.
fn build_id_note(notes: &[u8]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let align = |n: usize| n.checked_add(3).map(|n| n & !3);
    let u32_at = |at: usize| Some(u32::from_le_bytes(notes.get(at..at + 4)?.try_into().ok()?));
    let mut at = 0;
    while at + 12 <= notes.len() {
        let name_size = usize::try_from(u32_at(at)?).ok()?;
        let desc_size = usize::try_from(u32_at(at + 4)?).ok()?;
        let kind = u32_at(at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(align(name_size)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(desc_size)?)?;
        if kind == NT_GNU_BUILD_ID && notes.get(name_at..name_at + name_size)? == b"GNU\0" {
            return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
        }
        at = desc_at.checked_add(align(desc_size)?)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "reads /proc/self/maps, which under Miri is the interpreter's"
    )]
    fn maps_lines_and_build_ids_are_read() {
        let line = "55d0c0a00000-55d0c0b00000 r-xp 00001000 08:01 1234    /usr/bin/my app";
        let m = parse_maps_line(line).unwrap();
        assert_eq!(
            (m.start, m.limit, m.offset),
            (0x55d0c0a00000, 0x55d0c0b00000, 0x1000)
        );
        assert_eq!(m.file, "/usr/bin/my app");
        assert!(parse_maps_line("7ffd-7ffe r-xp 00000000 00:00 0 [vdso]").is_none());
        assert!(parse_maps_line("1000-2000 r--p 00000000 08:01 1 /lib/x.so").is_none());
        // Our own test binary: linked with a build id by default on Linux.
        let exe = std::env::current_exe().unwrap();
        let mappings = process_mappings();
        let own = mappings
            .iter()
            .find(|m| std::path::Path::new(&m.file) == exe)
            .expect("the test binary is mapped executable");
        assert!(own.build_id.len() >= 16, "build id {:?}", own.build_id);
        assert!(own.build_id.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn build_id_notes_are_parsed_defensively() {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&3u32.to_le_bytes());
        note.extend_from_slice(&3u32.to_le_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[0xde, 0xad, 0xbe, 0]);
        assert_eq!(build_id_note(&note).as_deref(), Some("deadbe"));
        assert_eq!(build_id_note(&note[..14]), None);
        assert_eq!(build_id_note(&[0xff; 12]), None);
    }
}
