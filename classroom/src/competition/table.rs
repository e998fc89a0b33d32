//! Reading a CSV file's header and rows: RFC 4180 quoting (the `csv`
//! crate), a UTF-8 byte-order mark and spaces around fields ignored, and
//! every malformed line reported by number instead of stopping the read.

use csv::{ReaderBuilder, StringRecord};

use super::problems::{Problems, Rejection, reject};

/// An open CSV file whose header has been read.
pub struct Table<'a> {
    reader: csv::Reader<&'a [u8]>,
    pub header: Vec<String>,
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
        problems.finish(Table { reader, header })
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
        mut each: impl FnMut(Row<'_>, &mut Problems),
    ) -> u64 {
        let mut count = 0;
        let width = self.header.len();
        let mut fields = StringRecord::new();
        loop {
            match self.reader.read_record(&mut fields) {
                Ok(false) => break,
                Ok(true) => {
                    count += 1;
                    let line = fields.position().map_or(0, |p| p.line());
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
                    let line = e.position().map(|p| p.line());
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
}

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8 text".to_string(),
        _ => format!("cannot be read as CSV ({e})"),
    }
}
