//! Reading a CSV file's header and rows: RFC 4180 quoting (the `csv`
//! crate), a UTF-8 byte-order mark and spaces around fields ignored, and
//! every malformed line reported by number instead of stopping the read.
//! A large file with no quote and no carriage return (where a line break
//! always ends a row and a comma always ends a field) can be read in parts,
//! each on a core of its own, split at line breaks and commas directly: the
//! same rows, fields and line numbers as the `csv` crate gives such a file.

use csv::{ByteRecord, ReaderBuilder, StringRecord};

use super::problems::{Problems, Rejection, reject};

/// An open CSV file whose header has been read.
pub struct Table<'a> {
    reader: csv::Reader<&'a [u8]>,
    bytes: &'a [u8],
    pub header: Vec<String>,
}

/// Rows of a table read apart from the others: a run of whole lines.
pub struct Part<'a> {
    bytes: &'a [u8],
    /// The line number of its first line.
    first_line: u64,
    width: usize,
    /// No quote and no carriage return: split at line breaks and commas.
    plain: bool,
}

/// One data row and its line number.
pub struct Row<'r> {
    pub line: u64,
    fields: Fields<'r>,
}

/// A row's fields: a record the `csv` crate read, or a plain line and
/// where each of its fields is.
enum Fields<'r> {
    Record(&'r StringRecord),
    Split(&'r str, &'r [std::ops::Range<usize>]),
}

impl Row<'_> {
    /// Field `i`, spaces around it ignored (trimmed here, not by the reader,
    /// which would allocate for every record).
    pub fn field(&self, i: usize) -> &str {
        match &self.fields {
            Fields::Record(record) => record.get(i),
            Fields::Split(text, ranges) => ranges.get(i).and_then(|r| text.get(r.clone())),
        }
        .unwrap_or("")
        .trim()
    }
}

impl<'a> Table<'a> {
    /// Opens `bytes`, refusing a file of more than `max_bytes`, one with no
    /// header, or a header with a repeated or empty name.
    pub fn open(bytes: &'a [u8], max_bytes: usize) -> Result<Table<'a>, Rejection> {
        if bytes.len() > max_bytes {
            return Err(reject(format!(
                "the file is {} bytes; the limit is {max_bytes}",
                bytes.len()
            )));
        }
        let mut reader = ReaderBuilder::new().flexible(true).from_reader(bytes);
        let header: Vec<String> = match reader.headers() {
            Ok(h) if !h.is_empty() && (h.len() != 1 || !h[0].trim().is_empty()) => {
                h.iter().map(|f| f.trim().to_string()).collect()
            }
            Ok(_) => return Err(reject("the file is empty; expected a header line")),
            Err(e) => return Err(reject(format!("line 1 (the header): {}", csv_error(&e)))),
        };
        let mut problems = Problems::default();
        for (i, name) in header.iter().enumerate() {
            if name.is_empty() {
                problems.add(Some(1), None, format!("header field {} has no name", i + 1));
            } else if header[..i].contains(name) {
                problems.add(Some(1), Some(name), "appears twice in the header");
            }
        }
        problems.finish(Table {
            reader,
            bytes,
            header,
        })
    }

    /// Where `name` is in the header.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// Reads every row, handing each to `each`; a line the CSV reader
    /// cannot read (bad UTF-8, a stray quote) or with the wrong number of
    /// fields becomes a problem. Blank lines are skipped, as the reader does.
    /// Returns how many data rows there were, malformed ones included.
    pub fn rows(
        mut self,
        problems: &mut Problems,
        each: impl FnMut(Row<'_>, &mut Problems),
    ) -> u64 {
        let width = self.header.len();
        read_rows(&mut self.reader, self.bytes, width, 0, problems, each)
    }

    /// The rows in up to `parts` parts of whole lines, in file order; one
    /// part unless the file is at least `min_bytes` and has no quote and no
    /// carriage return (then every line break ends a row, and a part can
    /// start at any of them).
    pub fn parts(self, parts: usize, min_bytes: usize) -> Vec<Part<'a>> {
        let start = usize::try_from(self.reader.position().byte())
            .unwrap_or(self.bytes.len())
            .min(self.bytes.len());
        let data = &self.bytes[start..];
        let width = self.header.len();
        let line_at =
            |offset: usize| 1 + memchr::memchr_iter(b'\n', &self.bytes[..offset]).count() as u64;
        let splittable =
            parts > 1 && data.len() >= min_bytes && memchr::memchr2(b'"', b'\r', data).is_none();
        if !splittable {
            return vec![Part {
                bytes: data,
                first_line: line_at(start),
                width,
                plain: false,
            }];
        }
        let mut cuts = vec![start];
        for k in 1..parts {
            let mid = start + data.len() * k / parts;
            let from = mid.max(*cuts.last().unwrap_or(&start));
            match memchr::memchr(b'\n', &self.bytes[from..]) {
                Some(at) if from + at + 1 < self.bytes.len() => cuts.push(from + at + 1),
                _ => break,
            }
        }
        cuts.push(self.bytes.len());
        cuts.dedup();
        cuts.windows(2)
            .map(|w| Part {
                bytes: &self.bytes[w[0]..w[1]],
                first_line: line_at(w[0]),
                width,
                plain: true,
            })
            .collect()
    }
}

impl Part<'_> {
    /// [`Table::rows`] for this part's lines, numbered as in the file.
    pub fn rows(self, problems: &mut Problems, each: impl FnMut(Row<'_>, &mut Problems)) -> u64 {
        if self.plain {
            return self.plain_rows(problems, each);
        }
        let mut reader = ReaderBuilder::new()
            .flexible(true)
            .has_headers(false)
            .from_reader(self.bytes);
        read_rows(
            &mut reader,
            self.bytes,
            self.width,
            self.first_line - 1,
            problems,
            each,
        )
    }
}

impl Part<'_> {
    /// Rows of a part with no quote and no carriage return, as the `csv`
    /// crate reads them: a line break ends a row, a comma a field, an empty
    /// line is skipped, and a line that is not UTF-8 is a problem.
    fn plain_rows(
        self,
        problems: &mut Problems,
        mut each: impl FnMut(Row<'_>, &mut Problems),
    ) -> u64 {
        let width = self.width;
        let mut count = 0;
        let mut ranges: Vec<std::ops::Range<usize>> = Vec::with_capacity(width);
        let mut line = self.first_line;
        let mut rest = self.bytes;
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let bytes = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or(&[]);
            let at = line;
            line += 1;
            if bytes.is_empty() {
                continue;
            }
            count += 1;
            let Ok(text) = std::str::from_utf8(bytes) else {
                problems.add(Some(at), None, UTF8);
                continue;
            };
            ranges.clear();
            let mut from = 0;
            for comma in memchr::memchr_iter(b',', bytes) {
                ranges.push(from..comma);
                from = comma + 1;
            }
            ranges.push(from..bytes.len());
            if ranges.len() != width {
                problems.add(
                    Some(at),
                    None,
                    format!("has {} fields; the header has {width}", ranges.len()),
                );
                continue;
            }
            each(
                Row {
                    line: at,
                    fields: Fields::Split(text, &ranges),
                },
                problems,
            );
        }
        count
    }
}

fn read_rows(
    reader: &mut csv::Reader<&[u8]>,
    input: &[u8],
    width: usize,
    lines_before: u64,
    problems: &mut Problems,
    mut each: impl FnMut(Row<'_>, &mut Problems),
) -> u64 {
    let mut count = 0;
    let mut bytes = ByteRecord::new();
    let mut lines = Lines {
        input,
        at: 0,
        line: 1,
    };
    loop {
        match reader.read_byte_record(&mut bytes) {
            Ok(false) => break,
            Ok(true) => {
                count += 1;
                // The record's own line, counted from its byte offset (the
                // reader's own count can name a blank line before it). Then
                // its text, field by field; the buffers go back and forth,
                // never copied.
                let line = bytes.position().map_or(0, |p| {
                    lines.line_of(usize::try_from(p.byte()).unwrap_or(usize::MAX))
                }) + lines_before;
                let fields = match StringRecord::from_byte_record(std::mem::take(&mut bytes)) {
                    Ok(fields) => fields,
                    Err(e) => {
                        bytes = e.into_byte_record();
                        problems.add(Some(line), None, UTF8);
                        continue;
                    }
                };
                if fields.len() == width {
                    each(
                        Row {
                            line,
                            fields: Fields::Record(&fields),
                        },
                        problems,
                    );
                } else {
                    problems.add(
                        Some(line),
                        None,
                        format!("has {} fields; the header has {width}", fields.len()),
                    );
                }
                bytes = fields.into_byte_record();
            }
            Err(e) => {
                count += 1;
                let line = e.position().map(|p| p.line() + lines_before);
                problems.add(line, None, csv_error(&e));
                // Anything but bad UTF-8 (read above, not here) stops the read.
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
            }
        }
    }
    count
}

/// Line numbers from byte offsets, counted once through the input as the
/// records come: a line ends at `\n`, `\r\n` or a lone `\r`, as the
/// reader ends them.
struct Lines<'a> {
    input: &'a [u8],
    at: usize,
    line: u64,
}

impl Lines<'_> {
    /// The line of the record that starts at `byte`, or after the blank
    /// lines there.
    fn line_of(&mut self, byte: usize) -> u64 {
        let to = byte.min(self.input.len());
        if to >= self.at {
            for i in memchr::memchr2_iter(b'\n', b'\r', &self.input[self.at..to]) {
                let i = self.at + i;
                let crlf = self.input[i] == b'\r' && self.input.get(i + 1) == Some(&b'\n');
                if !crlf {
                    self.line += 1;
                }
            }
            self.at = to;
        }
        // Blank lines the reader skipped at the record's start.
        let mut at = self.at;
        let mut line = self.line;
        loop {
            match self.input.get(at) {
                Some(b'\n') => at += 1,
                Some(b'\r') if self.input.get(at + 1) == Some(&b'\n') => at += 2,
                Some(b'\r') => at += 1,
                _ => return line,
            }
            line += 1;
        }
    }
}

const UTF8: &str = "is not valid UTF-8 text";

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => UTF8.to_string(),
        _ => format!("cannot be read as CSV ({e})"),
    }
}
