//! A schema-directed JSON scanner: one pass over a record's bytes straight into Arrow
//! builders, no tape and no generic JSON tree, for the records it is sure of.
//!
//! It is a fast path in front of arrow-json, never a second opinion: a record is taken only
//! when it is one JSON object whose values all have their column's type in their plainest
//! form (strings without escapes, numbers in JSON's grammar, RFC 3339 times in UTC, nested
//! objects for `STRUCT` columns) and whose keys are all different. Anything else — escapes,
//! a number where a string is declared, a missing `NOT NULL` value, a time with an offset,
//! bytes that are not UTF-8, a syntax error — makes the scanner step aside and the caller
//! decodes that record with arrow-json, so rows and dead-letter errors are arrow-json's own.
//! Values of keys not in the schema are checked against JSON's grammar and skipped.

use std::sync::Arc;

use datafusion::arrow::array::builder::NullBufferBuilder;
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    make_array, Array, ArrayBuilder, ArrayRef, BooleanBuilder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, StringArray, StructArray,
};
use datafusion::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::datatypes::{DataType, Fields, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;

/// Strings up to this long are scanned byte by byte, longer ones with memchr.
const SHORT_STRING: usize = 32;

/// Deepest nesting of skipped values the scanner follows before it steps aside.
const MAX_DEPTH: usize = 64;

/// A scanner for one schema, with the builders of the rows it has taken so far.
pub(crate) struct Scanner {
    schema: SchemaRef,
    root: Level,
    leaves: Vec<Leaf>,
    /// The current record's values, one per leaf, committed only when the record is good.
    values: Vec<Value>,
    /// Bytes of the records taken since the last batch: a bound on its string bytes.
    text_bytes: usize,
}

/// The fields of one JSON object: the record itself or a `STRUCT` column.
struct Level {
    fields: Fields,
    names: Vec<Box<[u8]>>,
    slots: Vec<Slot>,
}

enum Slot {
    Leaf(usize),
    Struct(Level),
}

struct Leaf {
    kind: Kind,
    nullable: bool,
    data_type: DataType,
    /// The last date a time of this column fell on (`YYYYMMDD`) and its day number: the
    /// times of one chunk mostly share their date.
    last_date: std::cell::Cell<(i64, i64)>,
    builder: Builder,
}

enum Kind {
    Utf8,
    Float64,
    Float32,
    Int64,
    Int32,
    Boolean,
    Timestamp(TimeUnit, Option<Tz>),
}

enum Builder {
    Utf8(Strings),
    Float64(Float64Builder),
    Float32(Float32Builder),
    Int(Int64Builder),
    Int32(Int32Builder),
    Boolean(BooleanBuilder),
}

#[derive(Clone, Copy)]
enum Value {
    /// A JSON `null`, or a key not in the object.
    Null,
    /// A string's bytes in the record.
    Str(usize, usize),
    F64(f64),
    I64(i64),
    Bool(bool),
}

/// Why a record was not taken: the caller decodes it another way.
struct StepAside;

type Scan<T> = std::result::Result<T, StepAside>;

impl Scanner {
    /// A scanner for `schema`, or `None` when a column has a type it does not decode (the
    /// caller then uses arrow-json for every record).
    pub(crate) fn new(schema: &SchemaRef) -> Option<Self> {
        let mut leaves = Vec::new();
        let root = Level::new(schema.fields(), &mut leaves)?;
        Some(Self {
            schema: schema.clone(),
            root,
            values: vec![Value::Null; leaves.len()],
            leaves,
            text_bytes: 0,
        })
    }

    /// Appends the row of `record` and returns true, or returns false and appends nothing
    /// when the record is not one the scanner is sure of. `utf8` says the caller has
    /// checked that the record is UTF-8 (a whole chunk at once is cheaper than a record).
    pub(crate) fn push(&mut self, record: &[u8], utf8: bool) -> bool {
        if !utf8 && std::str::from_utf8(record).is_err() {
            return false;
        }
        if self.text_bytes.saturating_add(record.len()) > i32::MAX as usize {
            // String offsets are i32: the rows so far must be finished first.
            return false;
        }
        self.values.fill(Value::Null);
        let mut cur = Cursor {
            bytes: record,
            pos: 0,
        };
        // One object, nothing after it but whitespace.
        cur.whitespace();
        let taken = scan_object(&self.root, &self.leaves, &mut self.values, &mut cur).is_ok() && {
            cur.whitespace();
            cur.pos == record.len()
        };
        if !taken {
            return false;
        }
        for (leaf, value) in self.leaves.iter_mut().zip(&self.values) {
            leaf.append(*value, record);
        }
        self.text_bytes += record.len();
        true
    }

    /// The rows taken since the last call, as a batch of the schema (`None` if there are none).
    pub(crate) fn finish(&mut self) -> Result<Option<RecordBatch>> {
        let rows = self.leaves.first().map(|l| l.len()).unwrap_or(0);
        if rows == 0 {
            return Ok(None);
        }
        let mut arrays: Vec<Option<ArrayRef>> = Vec::with_capacity(self.leaves.len());
        for leaf in &mut self.leaves {
            arrays.push(Some(leaf.finish()?));
        }
        let columns = self.root.assemble(&mut arrays)?;
        self.text_bytes = 0;
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

impl Level {
    fn new(fields: &Fields, leaves: &mut Vec<Leaf>) -> Option<Self> {
        let mut names = Vec::with_capacity(fields.len());
        let mut slots = Vec::with_capacity(fields.len());
        for field in fields.iter() {
            names.push(field.name().as_bytes().into());
            let slot = match field.data_type() {
                DataType::Struct(children) => {
                    // Struct nulls and missing objects are arrow-json's to decide.
                    Slot::Struct(Level::new(children, leaves)?)
                }
                other => {
                    let kind = Kind::of(other)?;
                    leaves.push(Leaf {
                        last_date: std::cell::Cell::new((-1, 0)),
                        builder: Builder::new(&kind),
                        kind,
                        nullable: field.is_nullable(),
                        data_type: other.clone(),
                    });
                    Slot::Leaf(leaves.len() - 1)
                }
            };
            slots.push(slot);
        }
        // Keys seen are tracked in a 64-bit mask.
        (fields.len() <= 64).then(|| Self {
            fields: fields.clone(),
            names,
            slots,
        })
    }

    fn find(&self, key: &[u8], hint: usize) -> Option<usize> {
        if self.names.get(hint).is_some_and(|n| **n == *key) {
            return Some(hint);
        }
        self.names.iter().position(|n| **n == *key)
    }

    fn assemble(&self, arrays: &mut [Option<ArrayRef>]) -> Result<Vec<ArrayRef>> {
        let mut columns = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            columns.push(match slot {
                Slot::Leaf(i) => arrays[*i].take().expect("each leaf is assembled once"),
                Slot::Struct(level) => {
                    let children = level.assemble(arrays)?;
                    Arc::new(StructArray::try_new(level.fields.clone(), children, None)?)
                }
            });
        }
        Ok(columns)
    }
}

impl Kind {
    fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 => Kind::Utf8,
            DataType::Float64 => Kind::Float64,
            DataType::Float32 => Kind::Float32,
            DataType::Int64 => Kind::Int64,
            DataType::Int32 => Kind::Int32,
            DataType::Boolean => Kind::Boolean,
            DataType::Timestamp(unit, tz) => {
                let tz = match tz {
                    Some(tz) => Some(tz.parse::<Tz>().ok()?),
                    None => None,
                };
                Kind::Timestamp(*unit, tz)
            }
            _ => return None,
        })
    }
}

impl Builder {
    fn new(kind: &Kind) -> Self {
        match kind {
            Kind::Utf8 => Builder::Utf8(Strings::new()),
            Kind::Float64 => Builder::Float64(Float64Builder::new()),
            Kind::Float32 => Builder::Float32(Float32Builder::new()),
            Kind::Int64 | Kind::Timestamp(..) => Builder::Int(Int64Builder::new()),
            Kind::Int32 => Builder::Int32(Int32Builder::new()),
            Kind::Boolean => Builder::Boolean(BooleanBuilder::new()),
        }
    }
}

impl Leaf {
    fn len(&self) -> usize {
        match &self.builder {
            Builder::Utf8(b) => b.len(),
            Builder::Float64(b) => b.len(),
            Builder::Float32(b) => b.len(),
            Builder::Int(b) => b.len(),
            Builder::Int32(b) => b.len(),
            Builder::Boolean(b) => b.len(),
        }
    }

    /// Appends a value the scan checked against this leaf's kind.
    fn append(&mut self, value: Value, record: &[u8]) {
        match (&mut self.builder, value) {
            (Builder::Utf8(b), Value::Str(lo, hi)) => b.append(&record[lo..hi]),
            (Builder::Float64(b), Value::F64(v)) => b.append_value(v),
            (Builder::Float32(b), Value::F64(v)) => b.append_value(v as f32),
            (Builder::Int(b), Value::I64(v)) => b.append_value(v),
            (Builder::Int32(b), Value::I64(v)) => b.append_value(v as i32),
            (Builder::Boolean(b), Value::Bool(v)) => b.append_value(v),
            (Builder::Utf8(b), _) => b.append_null(),
            (Builder::Float64(b), _) => b.append_null(),
            (Builder::Float32(b), _) => b.append_null(),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::Int32(b), _) => b.append_null(),
            (Builder::Boolean(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let array: ArrayRef = match &mut self.builder {
            Builder::Utf8(b) => Arc::new(b.finish()?),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
        };
        if array.data_type() == &self.data_type {
            return Ok(array);
        }
        // Timestamps are built as their i64 values: same layout, the declared type.
        let data = array
            .into_data()
            .into_builder()
            .data_type(self.data_type.clone())
            .build()?;
        Ok(make_array(data))
    }
}

/// A string column's offsets, bytes and nulls, turned into a `StringArray` (one UTF-8 check
/// of all its bytes) when the batch is finished.
struct Strings {
    /// Start of each row's bytes, and the end of the last one.
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    nulls: NullBufferBuilder,
}

impl Strings {
    fn new() -> Self {
        Self {
            offsets: vec![0],
            bytes: Vec::new(),
            nulls: NullBufferBuilder::new(0),
        }
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Appends a string; [`Scanner::push`] keeps the bytes under `i32::MAX`.
    fn append(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        self.offsets.push(self.bytes.len() as i32);
        self.nulls.append_non_null();
    }

    fn append_null(&mut self) {
        self.offsets.push(self.bytes.len() as i32);
        self.nulls.append_null();
    }

    fn finish(&mut self) -> Result<StringArray> {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let bytes = std::mem::take(&mut self.bytes);
        let nulls = self.nulls.finish();
        Ok(StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(bytes),
            nulls,
        )?)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Scan<u8> {
        self.bytes.get(self.pos).copied().ok_or(StepAside)
    }

    fn expect(&mut self, byte: u8) -> Scan<()> {
        if self.peek()? != byte {
            return Err(StepAside);
        }
        self.pos += 1;
        Ok(())
    }

    /// The bytes of a string without escapes, the cursor past its closing quote; the
    /// opening quote must be next.
    fn plain_string(&mut self) -> Scan<&'a [u8]> {
        let (start, end) = self.string_range()?;
        let bytes: &'a [u8] = self.bytes;
        Ok(&bytes[start..end])
    }

    /// Where the bytes of a string without escapes lie, the cursor past its closing quote.
    /// Control characters are taken as they are, as arrow-json takes them; the record is
    /// known to be UTF-8.
    fn string_range(&mut self) -> Scan<(usize, usize)> {
        self.expect(b'"')?;
        let start = self.pos;
        let rest = &self.bytes[start..];
        // Most strings are short: a byte loop finds their end before memchr's vector
        // set-up would pay off.
        let len = match rest
            .iter()
            .take(SHORT_STRING)
            .position(|&b| b == b'"' || b == b'\\')
        {
            Some(len) => len,
            None if rest.len() <= SHORT_STRING => return Err(StepAside),
            None => {
                SHORT_STRING
                    + memchr::memchr2(b'"', b'\\', &rest[SHORT_STRING..]).ok_or(StepAside)?
            }
        };
        if rest[len] != b'"' {
            return Err(StepAside);
        }
        self.pos = start + len + 1;
        Ok((start, start + len))
    }

    /// A number in JSON's grammar, as its text.
    fn number(&mut self) -> Scan<&'a [u8]> {
        let start = self.pos;
        let b: &'a [u8] = self.bytes;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        // Past a run of at least one digit from `i`.
        let digits = |i: usize| -> Scan<usize> {
            let end = i + b[i.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if end == i {
                return Err(StepAside);
            }
            Ok(end)
        };
        i = match b.get(i) {
            Some(b'0') => i + 1,
            _ => digits(i)?,
        };
        if b.get(i) == Some(&b'.') {
            i = digits(i + 1)?;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            i = digits(i)?;
        }
        self.pos = i;
        Ok(&b[start..i])
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if !self.bytes[self.pos..].starts_with(word) {
            return Err(StepAside);
        }
        self.pos += word.len();
        Ok(())
    }

    /// Walks the items between `open` and `close` (the cursor on `open`), separated by
    /// commas, calling `item` with the cursor on each; the cursor ends past `close`.
    fn sequence(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Scan<()>,
    ) -> Scan<()> {
        self.expect(open)?;
        self.whitespace();
        if self.peek()? == close {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.whitespace();
            item(self)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.pos += 1,
                b if b == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(StepAside),
            }
        }
    }

    /// Walks the members of an object (the cursor on its `{`), calling `member` with each
    /// key and the cursor on its value; the cursor ends past the `}`.
    fn object(&mut self, mut member: impl FnMut(&'a [u8], &mut Self) -> Scan<()>) -> Scan<()> {
        self.sequence(b'{', b'}', |cur| {
            let key = cur.plain_string()?;
            cur.whitespace();
            cur.expect(b':')?;
            cur.whitespace();
            member(key, cur)
        })
    }

    /// Skips one value of any kind, checking it against JSON's grammar.
    fn skip_value(&mut self, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return Err(StepAside);
        }
        match self.peek()? {
            b'"' => {
                self.string_range()?;
            }
            b'{' => self.object(|_, cur| cur.skip_value(depth + 1))?,
            b'[' => self.sequence(b'[', b']', |cur| cur.skip_value(depth + 1))?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => {
                self.number()?;
            }
        }
        Ok(())
    }
}

/// Scans one object of `level` into `values`.
fn scan_object(
    level: &Level,
    leaves: &[Leaf],
    values: &mut [Value],
    cur: &mut Cursor<'_>,
) -> Scan<()> {
    let mut seen: u64 = 0;
    let mut hint = 0;
    cur.object(|key, cur| {
        let Some(i) = level.find(key, hint) else {
            return cur.skip_value(0);
        };
        if seen & (1 << i) != 0 {
            // A repeated key: which one counts is arrow-json's to say.
            return Err(StepAside);
        }
        seen |= 1 << i;
        hint = i + 1;
        match &level.slots[i] {
            Slot::Leaf(l) => values[*l] = scan_value(&leaves[*l], cur)?,
            Slot::Struct(inner) => scan_object(inner, leaves, values, cur)?,
        }
        Ok(())
    })?;
    // Keys not in the object are nulls, where nulls are allowed.
    for (i, slot) in level.slots.iter().enumerate() {
        if seen & (1 << i) != 0 {
            continue;
        }
        match slot {
            Slot::Leaf(l) if leaves[*l].nullable => {}
            _ => return Err(StepAside),
        }
    }
    Ok(())
}

/// Scans one value of `leaf`'s kind.
fn scan_value(leaf: &Leaf, cur: &mut Cursor<'_>) -> Scan<Value> {
    if cur.peek()? == b'n' {
        cur.literal(b"null")?;
        return if leaf.nullable {
            Ok(Value::Null)
        } else {
            Err(StepAside)
        };
    }
    match &leaf.kind {
        Kind::Utf8 => {
            let (lo, hi) = cur.string_range()?;
            Ok(Value::Str(lo, hi))
        }
        Kind::Float64 => finite(parse_f64(cur.number()?)?),
        Kind::Float32 => {
            let v: f32 = std::str::from_utf8(cur.number()?)
                .map_err(|_| StepAside)?
                .parse()
                .map_err(|_| StepAside)?;
            finite(v as f64)
        }
        Kind::Int64 => Ok(Value::I64(parse_i64(cur.number()?)?)),
        Kind::Int32 => {
            let v = i32::try_from(parse_i64(cur.number()?)?).map_err(|_| StepAside)?;
            Ok(Value::I64(v as i64))
        }
        Kind::Boolean => match cur.peek()? {
            b't' => cur.literal(b"true").map(|_| Value::Bool(true)),
            b'f' => cur.literal(b"false").map(|_| Value::Bool(false)),
            _ => Err(StepAside),
        },
        Kind::Timestamp(unit, tz) => {
            let s = cur.plain_string()?;
            let nanos = match utc_nanos(s, &leaf.last_date) {
                Some(n) => n,
                None => general_time(std::str::from_utf8(s).map_err(|_| StepAside)?, tz)?,
            };
            let v = match unit {
                TimeUnit::Second => nanos.div_euclid(1_000_000_000),
                TimeUnit::Millisecond => nanos.div_euclid(1_000_000),
                TimeUnit::Microsecond => nanos.div_euclid(1_000),
                TimeUnit::Nanosecond => nanos,
            };
            Ok(Value::I64(v))
        }
    }
}

/// Powers of ten exactly representable as f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A JSON number (checked by [`Cursor::number`]) as the nearest f64. A decimal of at most 15
/// digits and 22 fraction digits without exponent is an exact integer divided by an exact
/// power of ten — one correctly rounded division, the same f64 as any correct parser's;
/// anything else goes through the standard library's parser (also correctly rounded).
fn parse_f64(text: &[u8]) -> Scan<f64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut mantissa: u64 = 0;
    let mut count = 0;
    let mut fraction = None;
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + (b - b'0') as u64;
                count += 1;
            }
            b'.' => fraction = Some(digits.len() - i - 1),
            _ => {
                count = usize::MAX; // an exponent
                break;
            }
        }
        if count > 15 {
            break;
        }
    }
    let scale = fraction.unwrap_or(0);
    if count <= 15 && scale < POW10.len() {
        let v = mantissa as f64 / POW10[scale];
        return Ok(if negative { -v } else { v });
    }
    std::str::from_utf8(text)
        .map_err(|_| StepAside)?
        .parse()
        .map_err(|_| StepAside)
}

/// A JSON number that is an integer (no fraction or exponent) as an i64.
fn parse_i64(text: &[u8]) -> Scan<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    // Accumulated as a negative number, so i64::MIN fits.
    let mut v: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(StepAside);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_sub((b - b'0') as i64))
            .ok_or(StepAside)?;
    }
    if negative {
        Ok(v)
    } else {
        v.checked_neg().ok_or(StepAside)
    }
}

fn finite(v: f64) -> Scan<Value> {
    if v.is_finite() {
        Ok(Value::F64(v))
    } else {
        Err(StepAside)
    }
}

/// A time string the plain form did not cover, through the function arrow-json uses.
fn general_time(s: &str, tz: &Option<Tz>) -> Scan<i64> {
    fn in_zone<T: chrono::TimeZone>(tz: &T, s: &str) -> Option<i64> {
        string_to_datetime(tz, s).ok()?.timestamp_nanos_opt()
    }
    match tz {
        Some(tz) => in_zone(tz, s),
        None => in_zone(&chrono::Utc, s),
    }
    .ok_or(StepAside)
}

/// Nanoseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (a `t` or a space may
/// stand for `T`, `z` for `Z`, 1 to 9 fraction digits): the form arrow's parser reads as
/// UTC whatever the column's zone. `None` for anything else or a time out of range.
fn utc_nanos(s: &[u8], last_date: &std::cell::Cell<(i64, i64)>) -> Option<i64> {
    if s.len() < 20 || !matches!(s[s.len() - 1], b'Z' | b'z') {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        s.get(range)?.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + (b - b'0') as i64)
        })
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let fraction = &s[19..s.len() - 1];
    let mut nanos = 0i64;
    if !fraction.is_empty() {
        let f = fraction.strip_prefix(b".")?;
        if f.is_empty() || f.len() > 9 || !f.iter().all(u8::is_ascii_digit) {
            return None;
        }
        nanos =
            f.iter().fold(0i64, |n, &b| n * 10 + (b - b'0') as i64) * 10i64.pow(9 - f.len() as u32);
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date = year * 10_000 + month * 100 + day;
    let days = match last_date.get() {
        (cached, days) if cached == date => days,
        _ => {
            if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
                return None;
            }
            let days = days_from_civil(year, month, day);
            last_date.set((date, days));
            days
        }
    };
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    // In i128: the earliest instant is i64::MIN only after the fraction is added.
    i64::try_from(seconds as i128 * 1_000_000_000 + nanos as i128).ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_to_the_standard_librarys_values() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.1",
            "-0.5",
            "123456789012345",
            "1234567890123456",
            "0.000001",
            "9007199254740993",
            "1.7976931348623157e308",
            "5e-324",
            "2.5E+3",
            "-12.250",
            "0.30000000000000004",
            "123.456789012345678",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut seed = 3u64;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let int = (seed >> 20) % 1_000_000_000;
            let frac_digits = (seed >> 8) % 12;
            let frac = (seed >> 40) % 10u64.pow(frac_digits as u32).max(1);
            cases.push(if frac_digits == 0 {
                format!("{int}")
            } else {
                format!("-{int}.{frac:0w$}", w = frac_digits as usize)
            });
        }
        for case in &cases {
            let want: f64 = case.parse().unwrap();
            let got = parse_f64(case.as_bytes()).ok().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{case}");
        }
        assert_eq!(parse_i64(b"-9223372036854775808").ok(), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807").ok(), Some(i64::MAX));
        assert!(parse_i64(b"9223372036854775808").is_err());
        assert!(parse_i64(b"1.0").is_err());
    }

    #[test]
    fn plain_utc_times_equal_arrows_parser() {
        let mut cases: Vec<String> = vec![
            "2026-11-27T10:00:00Z".into(),
            "2026-11-27t10:00:00.1z".into(),
            "2026-11-27 10:00:00.123456789Z".into(),
            "1969-12-31T23:59:59.999Z".into(),
            "1970-01-01T00:00:00Z".into(),
            "2000-02-29T12:34:56.5Z".into(),
            "1900-03-01T00:00:00Z".into(),
            "2262-04-11T23:47:16.854775807Z".into(),
            "1677-09-21T00:12:43.145224192Z".into(),
        ];
        let mut seed = 7u64;
        for _ in 0..2_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = |m: u64, s: u32| ((seed >> s) % m) as i64;
            cases.push(format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:0w$}Z",
                1700 + r(560, 3),
                1 + r(12, 13),
                1 + r(28, 19),
                r(24, 25),
                r(60, 31),
                r(60, 37),
                r(1000, 43),
                w = 1 + r(9, 53) as usize,
            ));
        }
        // Each case twice: once computing its date, once from the cache.
        let cache = std::cell::Cell::new((-1, 0));
        for case in cases.iter().flat_map(|c| [c, c]) {
            let arrow = string_to_datetime(&chrono::Utc, case)
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
            assert_eq!(utc_nanos(case.as_bytes(), &cache), Some(arrow), "{case}");
        }
        for other in [
            "2026-02-29T10:00:00Z",
            "2026-11-27T10:00:00",
            "2026-11-27T10:00:00+01:00",
            "2026-11-27T24:00:00Z",
            "2026-11-27T10:00:60Z",
            "2026-11-27T10:00:00.Z",
            "2026-11-27T10:00:00.1234567890Z",
            "2026-11-27T10:00Z",
            "2262-04-11T23:47:16.854775808Z",
        ] {
            assert_eq!(utc_nanos(other.as_bytes(), &cache), None, "{other}");
        }
    }
}
