//! pprof: the gzip-compressed `profile.proto` that `go tool pprof`, Pyroscope, Parca and
//! most profile viewers read.
//!
//! The profile has Go's four heap sample types, in Go's order: `alloc_objects/count`,
//! `alloc_space/bytes`, `inuse_objects/count`, `inuse_space/bytes` (viewers show the last by
//! default, as for Go heap profiles). The period type is `space/bytes` and the period is the
//! report's sampling rate; values are the report's estimates, already unbiased, so viewers
//! must not (and do not) scale them again.
//!
//! Symbols are embedded: every location carries its function (name and system name), file
//! and line, with the functions inlined at one return address as several `Line` entries,
//! innermost first, and every mapping says so (`has_functions`, `has_filenames`,
//! `has_line_numbers`, `has_inline_frames`), so viewers never re-symbolize addresses (which
//! goes wrong for Rust binaries). A profile of this process also has the `Mapping` rows of
//! its modules' executable segments, with their GNU build ids (read from memory by
//! `symbols::modules`).
//!
//! File names are kept as the compiler recorded them (the program's relative to its
//! workspace), as in Go's profiles: `go tool pprof -list` then finds the sources of
//! dependencies on the machine that built the program, and shortens paths at display
//! (`-trim_path`, `-source_path`). The text report shows them shortened (`trim_path`).
//!
//! Each stack starts at its first frame outside `std`/`alloc`/`core` (see
//! [`crate::export`]), so `go tool pprof -top` ranks the code that allocated.

use super::stacks::{export_stacks, function_name};
use crate::report::{Location, Report};
use std::collections::HashMap;
use std::io::Write;

/// The sample types of every profile, as `(type, unit)`, in the order of each sample's values.
pub(crate) const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// One executable mapping of a process: a `Mapping` row of the profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemoryMapping {
    /// First address of the mapping.
    pub(crate) start: u64,
    /// One past its last address.
    pub(crate) limit: u64,
    /// Offset in the file of the mapping's first byte.
    pub(crate) offset: u64,
    /// The mapped file (the executable or a shared library).
    pub(crate) file: String,
    /// The file's GNU build id in hex, empty where it has none.
    pub(crate) build_id: String,
}

/// What a pprof export says beyond the report itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct PprofOptions {
    /// The executable mappings of the process the report describes. Empty (the default, right
    /// for a report read from a file): one placeholder mapping holds every location.
    pub(crate) mappings: Vec<MemoryMapping>,
    /// The sample type viewers show first; `None` leaves it to them (`inuse_space`).
    pub(crate) default_sample_type: Option<&'static str>,
    /// When the profile was taken, in nanoseconds since the Unix epoch (0: not said).
    pub(crate) time_nanos: i64,
    /// The time a delta profile covers, in nanoseconds (0: not a delta).
    pub(crate) duration_nanos: i64,
}

impl Report {
    /// The report as a gzip-compressed pprof profile, without mappings of this process (right
    /// for a report read from a file).
    ///
    /// ```
    /// let report = alloc_tracker::Report::from_json(r#"{"format": "alloc-tracker",
    ///     "version": 1, "sample_rate": 1, "uptime_ms": 0,
    ///     "totals": {"live_bytes": 0, "live_allocs": 0, "peak_live_bytes": 0,
    ///                "alloc_bytes": 0, "allocs": 0, "frees": 0},
    ///     "process": {}, "tracker": {"bytes": 0, "stacks": 0, "dropped_samples": 0},
    ///     "sites": []}"#).unwrap();
    /// let gz = report.to_pprof_gz();
    /// assert_eq!(&gz[..2], &[0x1f, 0x8b]); // gzip
    /// ```
    pub fn to_pprof_gz(&self) -> Vec<u8> {
        self.to_pprof_gz_with(&PprofOptions::default())
    }

    /// The report as a gzip-compressed pprof profile, with `options` (use
    /// the mappings of the process it describes).
    pub(crate) fn to_pprof_gz_with(&self, options: &PprofOptions) -> Vec<u8> {
        gzip(&encode(self.sample_rate, &rows(self), options))
    }

    /// The change from `base` to this report as a gzip-compressed pprof profile: each
    /// stack's values minus its values in `base` (negative where it shrank), as
    /// `go tool pprof -base` computes and as Go's `/debug/pprof/heap?seconds=N` serves.
    pub fn to_pprof_delta_gz(&self, base: &Report) -> Vec<u8> {
        self.to_pprof_delta_gz_with(base, &PprofOptions::default())
    }

    /// [`Report::to_pprof_delta_gz`] with `options`.
    pub(crate) fn to_pprof_delta_gz_with(&self, base: &Report, options: &PprofOptions) -> Vec<u8> {
        let mut delta = rows(self);
        let index: HashMap<Vec<Location>, usize> = delta
            .iter()
            .enumerate()
            .map(|(i, row)| (row.frames.clone(), i))
            .collect();
        for row in rows(base) {
            let negated = row.values.map(i64::saturating_neg);
            match index.get(&row.frames) {
                Some(&i) => {
                    for (value, base) in delta[i].values.iter_mut().zip(negated) {
                        *value = value.saturating_add(base);
                    }
                }
                None => delta.push(Row {
                    frames: row.frames,
                    values: negated,
                    block_size: None,
                }),
            }
        }
        delta.retain(|row| row.values.iter().any(|&v| v != 0));
        for row in &mut delta {
            row.block_size = None;
        }
        gzip(&encode(self.sample_rate, &delta, options))
    }
}

/// One pprof sample: a stack and its values in [`SAMPLE_TYPES`] order.
struct Row {
    frames: Vec<Location>,
    values: [i64; 4],
    /// Average size of the stack's allocations (Go's `bytes` label).
    block_size: Option<i64>,
}

/// The report's stacks as samples; stacks that became equal once trimmed are merged.
fn rows(report: &Report) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut index: HashMap<Vec<Location>, usize> = HashMap::new();
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for stack in export_stacks(report) {
        let f = stack.figures;
        let values = [
            signed(f.allocs),
            signed(f.alloc_bytes),
            signed(f.live_allocs),
            signed(f.live_bytes),
        ];
        if values.iter().all(|&v| v == 0) {
            continue;
        }
        let frames: Vec<Location> = stack.frames.into_iter().cloned().collect();
        match index.get(&frames) {
            Some(&i) => {
                for (sum, v) in rows[i].values.iter_mut().zip(values) {
                    *sum = sum.saturating_add(v);
                }
            }
            None => {
                index.insert(frames.clone(), rows.len());
                rows.push(Row {
                    frames,
                    values,
                    block_size: None,
                });
            }
        }
    }
    for row in &mut rows {
        // Rounded to the nearest byte: both figures are rounded estimates, and truncating
        // made a fixed 5000-byte site read 4999 in one report and 5000 in the next, which
        // keeps `go tool pprof -base` from cancelling its samples.
        let [objects, bytes, ..] = row.values;
        row.block_size = (objects > 0).then(|| bytes.saturating_add(objects / 2) / objects);
    }
    rows
}

/// The protobuf messages of pprof's `profile.proto` that this exporter writes, declared by
/// hand (field numbers from `github.com/google/pprof/proto/profile.proto`), with their
/// `prost::Message` implementations written by `messages!` from `prost::encoding`'s
/// functions (what `prost-derive` would generate, without its dozen build dependencies).
mod proto {
    use prost::bytes::{Buf, BufMut};
    use prost::encoding::{self, DecodeContext, WireType};
    use prost::DecodeError;

    /// The three functions of a field's encoding, by the field's kind: `scalar` (proto3: the
    /// default value is not written), `packed` (repeated numbers), `repeated` (repeated
    /// strings or messages, one record each), `optional` (a message).
    macro_rules! field {
        (encode, scalar $codec:ident $type:ty, $tag:literal, $value:expr, $buf:ident) => {
            if *$value != <$type>::default() {
                encoding::$codec::encode($tag, $value, $buf)
            }
        };
        (merge, scalar $codec:ident $_type:ty, $value:expr, $wire:ident, $buf:ident, $ctx:ident) => {
            encoding::$codec::merge($wire, $value, $buf, $ctx)
        };
        (len, scalar $codec:ident $type:ty, $tag:literal, $value:expr) => {
            if *$value != <$type>::default() {
                encoding::$codec::encoded_len($tag, $value)
            } else {
                0
            }
        };
        (encode, packed $codec:ident $_type:ty, $tag:literal, $value:expr, $buf:ident) => {
            encoding::$codec::encode_packed($tag, $value, $buf)
        };
        (merge, packed $codec:ident $_type:ty, $value:expr, $wire:ident, $buf:ident, $ctx:ident) => {
            encoding::$codec::merge_repeated($wire, $value, $buf, $ctx)
        };
        (len, packed $codec:ident $_type:ty, $tag:literal, $value:expr) => {
            encoding::$codec::encoded_len_packed($tag, $value)
        };
        (encode, repeated $codec:ident $_type:ty, $tag:literal, $value:expr, $buf:ident) => {
            encoding::$codec::encode_repeated($tag, $value, $buf)
        };
        (merge, repeated $codec:ident $_type:ty, $value:expr, $wire:ident, $buf:ident, $ctx:ident) => {
            encoding::$codec::merge_repeated($wire, $value, $buf, $ctx)
        };
        (len, repeated $codec:ident $_type:ty, $tag:literal, $value:expr) => {
            encoding::$codec::encoded_len_repeated($tag, $value)
        };
        (encode, optional $codec:ident $_type:ty, $tag:literal, $value:expr, $buf:ident) => {
            if let Some(value) = $value {
                encoding::$codec::encode($tag, value, $buf)
            }
        };
        (merge, optional $codec:ident $_type:ty, $value:expr, $wire:ident, $buf:ident, $ctx:ident) => {
            encoding::$codec::merge(
                $wire,
                $value.get_or_insert_with(Default::default),
                $buf,
                $ctx,
            )
        };
        (len, optional $codec:ident $_type:ty, $tag:literal, $value:expr) => {
            $value
                .as_ref()
                .map_or(0, |value| encoding::$codec::encoded_len($tag, value))
        };
    }

    /// Declares each message as a struct of its fields (`tag name: kind codec type`) and
    /// implements `prost::Message` for it.
    macro_rules! messages {
        ($(struct $name:ident {
            $($tag:literal $field:ident: $kind:ident $codec:ident $type:ty,)*
        })*) => {$(
            #[derive(Clone, Debug, Default, PartialEq)]
            pub(super) struct $name {
                $(pub(super) $field: $type,)*
            }

            impl prost::Message for $name {
                fn encode_raw(&self, buf: &mut impl BufMut) {
                    $(field!(encode, $kind $codec $type, $tag, &self.$field, buf);)*
                }

                fn merge_field(
                    &mut self,
                    tag: u32,
                    wire_type: WireType,
                    buf: &mut impl Buf,
                    ctx: DecodeContext,
                ) -> Result<(), DecodeError> {
                    match tag {
                        $($tag => field!(merge, $kind $codec $type, &mut self.$field, wire_type, buf, ctx),)*
                        _ => encoding::skip_field(wire_type, tag, buf, ctx),
                    }
                }

                fn encoded_len(&self) -> usize {
                    0 $(+ field!(len, $kind $codec $type, $tag, &self.$field))*
                }

                fn clear(&mut self) {
                    *self = Self::default();
                }
            }
        )*};
    }

    messages! {
        struct Profile {
            1 sample_type: repeated message Vec<ValueType>,
            2 sample: repeated message Vec<Sample>,
            3 mapping: repeated message Vec<Mapping>,
            4 location: repeated message Vec<Location>,
            5 function: repeated message Vec<Function>,
            6 string_table: repeated string Vec<String>,
            9 time_nanos: scalar int64 i64,
            10 duration_nanos: scalar int64 i64,
            11 period_type: optional message Option<ValueType>,
            12 period: scalar int64 i64,
            13 comment: packed int64 Vec<i64>,
            14 default_sample_type: scalar int64 i64,
        }

        struct ValueType {
            1 r#type: scalar int64 i64,
            2 unit: scalar int64 i64,
        }

        struct Sample {
            1 location_id: packed uint64 Vec<u64>,
            2 value: packed int64 Vec<i64>,
            3 label: repeated message Vec<Label>,
        }

        struct Label {
            1 key: scalar int64 i64,
            2 str: scalar int64 i64,
            3 num: scalar int64 i64,
            4 num_unit: scalar int64 i64,
        }

        struct Mapping {
            1 id: scalar uint64 u64,
            2 memory_start: scalar uint64 u64,
            3 memory_limit: scalar uint64 u64,
            4 file_offset: scalar uint64 u64,
            5 filename: scalar int64 i64,
            6 build_id: scalar int64 i64,
            7 has_functions: scalar bool bool,
            8 has_filenames: scalar bool bool,
            9 has_line_numbers: scalar bool bool,
            10 has_inline_frames: scalar bool bool,
        }

        struct Location {
            1 id: scalar uint64 u64,
            2 mapping_id: scalar uint64 u64,
            3 address: scalar uint64 u64,
            4 line: repeated message Vec<Line>,
        }

        struct Line {
            1 function_id: scalar uint64 u64,
            2 line: scalar int64 i64,
        }

        struct Function {
            1 id: scalar uint64 u64,
            2 name: scalar int64 i64,
            3 system_name: scalar int64 i64,
            4 filename: scalar int64 i64,
            5 start_line: scalar int64 i64,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use prost::Message;

        #[test]
        fn messages_round_trip_and_skip_what_they_do_not_know() {
            let profile = Profile {
                sample_type: vec![ValueType { r#type: 1, unit: 2 }],
                sample: vec![Sample {
                    location_id: vec![1, 2, 300],
                    value: vec![-5, 0, 1 << 40],
                    label: vec![Label {
                        key: 3,
                        num: 1024,
                        ..Label::default()
                    }],
                }],
                mapping: vec![Mapping {
                    id: 1,
                    memory_limit: u64::MAX,
                    has_functions: true,
                    ..Mapping::default()
                }],
                string_table: vec![String::new(), "bytes".into(), "ü".into()],
                period_type: Some(ValueType::default()),
                period: 524_288,
                comment: vec![2],
                ..Profile::default()
            };
            let bytes = profile.encode_to_vec();
            assert_eq!(bytes.len(), profile.encoded_len());
            assert_eq!(Profile::decode(bytes.as_slice()).unwrap(), profile);
            // A field this exporter does not write (`drop_frames`, 7) is skipped.
            let mut with_unknown = bytes.clone();
            with_unknown.extend_from_slice(&[7 << 3, 0]);
            assert_eq!(Profile::decode(with_unknown.as_slice()).unwrap(), profile);
            // Proto3 scalars at their default are not written at all.
            assert!(ValueType::default().encode_to_vec().is_empty());
            assert!(Profile::decode(&bytes[..bytes.len() - 1]).is_err());
        }
    }
}

/// Builds the profile's tables (strings, functions, locations, mappings) as samples are added.
struct Builder<'o> {
    profile: proto::Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(String, Option<String>), u64>,
    locations: HashMap<(u64, Vec<(u64, i64)>), u64>,
    /// The options' mappings sorted by start, with their profile id once used.
    mappings: Vec<(&'o MemoryMapping, Option<u64>)>,
    /// The id of the placeholder mapping, once used.
    placeholder: Option<u64>,
}

impl<'o> Builder<'o> {
    fn new(options: &'o PprofOptions) -> Self {
        let mut mappings: Vec<(&MemoryMapping, Option<u64>)> =
            options.mappings.iter().map(|m| (m, None)).collect();
        mappings.sort_by_key(|(m, _)| m.start);
        let mut builder = Self {
            profile: proto::Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            mappings,
            placeholder: None,
        };
        builder.string(""); // index 0 is always the empty string
        builder
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.strings.get(s) {
            return id;
        }
        let id = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), id);
        id
    }

    fn function(&mut self, frame: &Location) -> u64 {
        let name = function_name(frame);
        let key = (name.to_string(), frame.file.clone());
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let name = self.string(name);
        let filename = self.string(frame.file.as_deref().unwrap_or(""));
        self.profile.function.push(proto::Function {
            id,
            name,
            // Demangled names are all the report keeps: they serve as system names too.
            system_name: name,
            filename,
            start_line: 0,
        });
        self.functions.insert(key, id);
        id
    }

    /// The mapping that holds `address` (the placeholder mapping where none does).
    fn mapping_for(&mut self, address: Option<u64>) -> u64 {
        if let Some(address) = address {
            let found = self
                .mappings
                .partition_point(|(m, _)| m.start <= address)
                .checked_sub(1)
                .filter(|&i| address < self.mappings[i].0.limit);
            if let Some(i) = found {
                if let Some(id) = self.mappings[i].1 {
                    return id;
                }
                let m = self.mappings[i].0;
                let id = self.add_mapping(m.start, m.limit, m.offset, &m.file, &m.build_id);
                self.mappings[i].1 = Some(id);
                return id;
            }
        }
        match self.placeholder {
            Some(id) => id,
            None => {
                let id = self.add_mapping(0, 0, 0, "", "");
                self.placeholder = Some(id);
                id
            }
        }
    }

    fn add_mapping(
        &mut self,
        start: u64,
        limit: u64,
        offset: u64,
        file: &str,
        build_id: &str,
    ) -> u64 {
        let id = self.profile.mapping.len() as u64 + 1;
        let filename = self.string(file);
        let build_id = self.string(build_id);
        self.profile.mapping.push(proto::Mapping {
            id,
            memory_start: start,
            memory_limit: limit,
            file_offset: offset,
            filename,
            build_id,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        });
        id
    }

    /// The location of one return address and the frames inlined there (innermost first).
    fn location(&mut self, group: &[Location]) -> u64 {
        let address = group.first().and_then(|f| f.address);
        let lines: Vec<(u64, i64)> = group
            .iter()
            .map(|frame| (self.function(frame), i64::from(frame.line.unwrap_or(0))))
            .collect();
        // The call instruction is the byte before the return address (as Go writes it).
        let pc = address.map_or(0, |a| a.saturating_sub(1));
        let key = (pc, lines);
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let id = self.profile.location.len() as u64 + 1;
        let mapping_id = self.mapping_for(address.map(|_| pc));
        self.profile.location.push(proto::Location {
            id,
            mapping_id,
            address: pc,
            line: key
                .1
                .iter()
                .map(|&(function_id, line)| proto::Line { function_id, line })
                .collect(),
        });
        self.locations.insert(key, id);
        id
    }

    fn sample(&mut self, row: &Row) {
        let location_id = inline_groups(&row.frames)
            .into_iter()
            .map(|group| self.location(group))
            .collect();
        let label = match row.block_size {
            Some(size) => vec![proto::Label {
                key: self.string("bytes"),
                str: 0,
                num: size,
                num_unit: 0,
            }],
            None => Vec::new(),
        };
        self.profile.sample.push(proto::Sample {
            location_id,
            value: row.values.to_vec(),
            label,
        });
    }
}

/// Splits frames (innermost first) into the groups that share one return address: the
/// frames inlined at a call, then the function that made it. A frame without an address is
/// a group of its own; a repeat of a group's first frame (recursion) starts a new group.
fn inline_groups(frames: &[Location]) -> Vec<&[Location]> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=frames.len() {
        let ends = match (frames.get(i), frames.get(start)) {
            (Some(next), Some(first)) => {
                next.address.is_none() || next.address != first.address || next == first
            }
            _ => true,
        };
        if ends {
            if start < i {
                groups.push(&frames[start..i]);
            }
            start = i;
        }
    }
    groups
}

/// Encodes the profile (uncompressed).
fn encode(sample_rate: u64, rows: &[Row], options: &PprofOptions) -> Vec<u8> {
    use prost::Message;
    let mut b = Builder::new(options);
    for (kind, unit) in SAMPLE_TYPES {
        let value_type = proto::ValueType {
            r#type: b.string(kind),
            unit: b.string(unit),
        };
        b.profile.sample_type.push(value_type);
    }
    let period_type = proto::ValueType {
        r#type: b.string("space"),
        unit: b.string("bytes"),
    };
    b.profile.period_type = Some(period_type);
    b.profile.period = i64::try_from(sample_rate).unwrap_or(i64::MAX);
    b.profile.time_nanos = options.time_nanos;
    b.profile.duration_nanos = options.duration_nanos;
    if let Some(kind) = options.default_sample_type {
        b.profile.default_sample_type = b.string(kind);
    }
    let comment = match sample_rate {
        1 => "alloc-tracker: every allocation recorded".to_string(),
        rate => format!(
            "alloc-tracker: one sample per {rate} bytes allocated on average; values are unbiased estimates"
        ),
    };
    let comment = b.string(&comment);
    b.profile.comment.push(comment);
    for row in rows {
        b.sample(row);
    }
    b.profile.encode_to_vec()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    match encoder.write_all(bytes) {
        Ok(()) => encoder.finish().unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::sample_report;
    use prost::Message;
    use std::io::Read;

    fn decode(gz: &[u8]) -> proto::Profile {
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut bytes)
            .unwrap();
        proto::Profile::decode(bytes.as_slice()).unwrap()
    }

    fn str_of(p: &proto::Profile, i: i64) -> &str {
        &p.string_table[i as usize]
    }

    /// Each sample as (function names of its lines, innermost first; values).
    fn samples(p: &proto::Profile) -> Vec<(Vec<String>, Vec<i64>)> {
        p.sample
            .iter()
            .map(|s| {
                let names = s
                    .location_id
                    .iter()
                    .flat_map(|&id| p.location[id as usize - 1].line.iter())
                    .map(|line| {
                        let f = &p.function[line.function_id as usize - 1];
                        str_of(p, f.name).to_string()
                    })
                    .collect();
                (names, s.value.clone())
            })
            .collect()
    }

    #[test]
    fn sample_types_and_period_are_gos() {
        let p = decode(&sample_report().to_pprof_gz());
        let types: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|t| (str_of(&p, t.r#type), str_of(&p, t.unit)))
            .collect();
        assert_eq!(types, SAMPLE_TYPES);
        let period = p.period_type.as_ref().unwrap();
        assert_eq!(
            (str_of(&p, period.r#type), str_of(&p, period.unit)),
            ("space", "bytes")
        );
        assert_eq!(p.period, 1);
        assert_eq!(p.string_table[0], "");
    }

    #[test]
    fn values_are_the_reports_estimates_and_machinery_is_dropped() {
        let p = decode(&sample_report().to_pprof_gz());
        let samples = samples(&p);
        assert_eq!(samples.len(), 2);
        assert_eq!(
            samples[0].0,
            ["app::leaky::inner", "app::leaky", "app::main"]
        );
        assert_eq!(samples[0].1, [8, 8192, 4, 4096]);
        assert_eq!(samples[1].0[0], "app::cache<[u8; 4]>");
        let label = &p.sample[0].label[0];
        assert_eq!((str_of(&p, label.key), label.num), ("bytes", 1024));
    }

    #[test]
    fn the_bytes_label_is_rounded_to_the_nearest_byte() {
        let mut report = sample_report();
        let figures = &mut report.sites[0].stacks[0].figures;
        (figures.allocs, figures.alloc_bytes) = (3, 14_999);
        let p = decode(&report.to_pprof_gz());
        let sample = p.sample.iter().find(|s| s.value[0] == 3).unwrap();
        assert_eq!(sample.label[0].num, 5000);
    }

    #[test]
    fn inlined_frames_share_one_location_innermost_first() {
        let p = decode(&sample_report().to_pprof_gz());
        let first = &p.sample[0];
        assert_eq!(
            first.location_id.len(),
            2,
            "leaky::inner is inlined into leaky"
        );
        let location = &p.location[first.location_id[0] as usize - 1];
        assert_eq!(location.address, 0x3000 - 1);
        let lines: Vec<i64> = location.line.iter().map(|l| l.line).collect();
        assert_eq!(lines, [7, 12]);
        let function = &p.function[location.line[0].function_id as usize - 1];
        assert_eq!(str_of(&p, function.filename), "src/main.rs");
        assert_eq!(function.system_name, function.name);
        // app::main is shared by both stacks, but at two call sites: two locations.
        assert_eq!(p.location.len(), 4);
        assert_eq!(p.function.len(), 4);
    }

    #[test]
    fn every_location_has_a_symbolized_mapping() {
        let p = decode(&sample_report().to_pprof_gz());
        assert_eq!(p.mapping.len(), 1, "one placeholder mapping");
        let m = &p.mapping[0];
        assert!(m.has_functions && m.has_filenames && m.has_line_numbers && m.has_inline_frames);
        assert!(p.location.iter().all(|l| l.mapping_id == m.id));
    }

    #[test]
    fn live_mappings_hold_the_locations_in_them() {
        let options = PprofOptions {
            mappings: vec![
                MemoryMapping {
                    start: 0x4f00,
                    limit: 0x6000,
                    offset: 0x1000,
                    file: "/usr/lib/libcache.so".into(),
                    build_id: "abcd".into(),
                },
                MemoryMapping {
                    start: 0x2000,
                    limit: 0x4000,
                    offset: 0,
                    file: "/bin/app".into(),
                    build_id: "1234".into(),
                },
                MemoryMapping {
                    start: 0x9000,
                    limit: 0xa000,
                    offset: 0,
                    file: "/unused.so".into(),
                    build_id: String::new(),
                },
            ],
            default_sample_type: Some("alloc_space"),
            time_nanos: 42,
            duration_nanos: 0,
        };
        let p = decode(&sample_report().to_pprof_gz_with(&options));
        let files: Vec<&str> = p.mapping.iter().map(|m| str_of(&p, m.filename)).collect();
        // Used mappings only, plus the placeholder for 0x4010 (outside every mapping).
        assert_eq!(files, ["/bin/app", "/usr/lib/libcache.so", ""]);
        assert_eq!(str_of(&p, p.mapping[0].build_id), "1234");
        for location in &p.location {
            let m = &p.mapping[location.mapping_id as usize - 1];
            if !str_of(&p, m.filename).is_empty() {
                assert!((m.memory_start..m.memory_limit).contains(&location.address));
            }
        }
        assert_eq!(str_of(&p, p.default_sample_type), "alloc_space");
        assert_eq!(p.time_nanos, 42);
    }

    #[test]
    fn a_delta_subtracts_the_base_per_stack() {
        let base = sample_report();
        let mut new = sample_report();
        new.sites[0].stacks[0].figures.live_bytes += 1000;
        new.sites[1].stacks[0].figures.live_bytes -= 24;
        let p = decode(&new.to_pprof_delta_gz(&base));
        let samples = samples(&p);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].1, [0, 0, 0, 1000]);
        assert_eq!(samples[1].1, [0, 0, 0, -24]);
        let same = decode(&base.to_pprof_delta_gz(&base));
        assert!(same.sample.is_empty());
    }

    #[test]
    fn recursion_at_one_address_is_not_merged() {
        let f = crate::export::tests::frame("app::recurse", "src/main.rs", 3, 0x10);
        let frames = vec![f.clone(), f.clone(), f];
        assert_eq!(inline_groups(&frames).len(), 3);
        assert!(inline_groups(&[]).is_empty());
    }
}
