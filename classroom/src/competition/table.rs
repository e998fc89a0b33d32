//! Reading a CSV file's header and rows: RFC 4180 quoting (the `csv`
//! crate), a UTF-8 byte-order mark and spaces around fields ignored, and
//! every malformed line reported by number instead of stopping the read.
//! A large file with no quote and no carriage return (where a line break
//! always ends a row) can be read in parts, each on a core of its own.

use csv::{ReaderBuilder, StringRecord};

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
}

/// One data row and its line number.
pub struct Row<'r> {
    pub line: u64,
    fields: &'r StringRecord,
}

impl Row<'_> {
    /// Field `i`, spaces around it ignored (trimmed here, not by the reader,
    /// which would allocate for every record).
    pub fn field(&self, i: usize) -> &str {
        self.fields.get(i).unwrap_or("").trim()
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
        read_rows(&mut self.reader, width, 0, problems, each)
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
            })
            .collect()
    }
}

impl Part<'_> {
    /// [`Table::rows`] for this part's lines, numbered as in the file.
    pub fn rows(self, problems: &mut Problems, each: impl FnMut(Row<'_>, &mut Problems)) -> u64 {
        let mut reader = ReaderBuilder::new()
            .flexible(true)
            .has_headers(false)
            .from_reader(self.bytes);
        read_rows(&mut reader, self.width, self.first_line - 1, problems, each)
    }
}

fn read_rows(
    reader: &mut csv::Reader<&[u8]>,
    width: usize,
    lines_before: u64,
    problems: &mut Problems,
    mut each: impl FnMut(Row<'_>, &mut Problems),
) -> u64 {
    let mut count = 0;
    let mut fields = StringRecord::new();
    loop {
        match reader.read_record(&mut fields) {
            Ok(false) => break,
            Ok(true) => {
                count += 1;
                let line = fields.position().map_or(0, |p| p.line()) + lines_before;
                if fields.len() != width {
                    problems.add(
                        Some(line),
                        None,
                        format!("has {} fields; the header has {width}", fields.len()),
                    );
                    continue;
                }
                each(
                    Row {
                        line,
                        fields: &fields,
                    },
                    problems,
                );
            }
            Err(e) => {
                count += 1;
                let line = e.position().map(|p| p.line() + lines_before);
                let fatal = !matches!(e.kind(), csv::ErrorKind::Utf8 { .. });
                problems.add(line, None, csv_error(&e));
                if fatal {
                    break;
                }
            }
        }
    }
    count
}

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8 text".to_string(),
        _ => format!("cannot be read as CSV ({e})"),
    }
}
