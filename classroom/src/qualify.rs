//! Rust test cells call the standard library's checking macros by path.
//!
//! In academy-rust (evcxr) an answer cell runs in the same crate as the
//! tests after it, so `macro_rules! assert_eq { ($($t:tt)*) => {} }` in an
//! answer would silently replace the `assert_eq!` of every later test: a
//! macro defined by `macro_rules!` shadows the prelude's by name. A path
//! cannot be shadowed that way, so before grading, the cells that come from
//! the trainer's source get `assert!`, `assert_eq!`, … rewritten to
//! `std::assert!`, …. (Not `::std::`: evcxr takes a cell whose first line
//! starts with `:` for one of its commands. A module an answer names `std`
//! makes the path ambiguous, a compile error, so the test still fails.)
//! Only code is rewritten: strings, characters and
//! comments are left as they are, and a macro already called by a path
//! (`std::assert!`, `my::assert!`) is not touched.

/// The macros tests check with (and `panic!`, which they fail with).
const MACROS: &[&str] = &[
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "panic",
    "unreachable",
    "matches",
];

/// `code` with every bare call of a checking macro qualified by `std::`.
pub fn qualify_std_macros(code: &str) -> String {
    let bytes = code.as_bytes();
    let mut out = String::with_capacity(code.len() + 16);
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
            i = code[i..].find('\n').map_or(bytes.len(), |n| i + n);
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(bytes, i);
        } else if b == b'"' {
            i = skip_string(bytes, i + 1);
        } else if b == b'r' && raw_string_start(bytes, i).is_some() {
            let (hashes, body) = raw_string_start(bytes, i).unwrap_or((0, i + 1));
            let close = format!("\"{}", "#".repeat(hashes));
            i = code[body..]
                .find(&close)
                .map_or(bytes.len(), |n| body + n + close.len());
        } else if b == b'\'' {
            i = skip_char(bytes, i);
        } else if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &code[start..i];
            let bang = bytes.get(i) == Some(&b'!') && bytes.get(i + 1) != Some(&b'=');
            let by_path = code[..start].trim_end().ends_with("::");
            let raw_ident = code[..start].ends_with("r#");
            if bang && !by_path && !raw_ident && MACROS.contains(&word) {
                out.push_str(&code[copied..start]);
                out.push_str("std::");
                copied = start;
            }
        } else {
            i += 1;
        }
    }
    out.push_str(&code[copied..]);
    out
}

fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    // Rust block comments nest.
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

fn skip_string(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// `r"…"`, `r#"…"#`, `br"…"`: the number of `#` and where the body starts.
fn raw_string_start(bytes: &[u8], i: usize) -> Option<(usize, usize)> {
    if i > 0
        && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
        && bytes[i - 1] != b'b'
    {
        return None;
    }
    let mut j = i + 1;
    while bytes.get(j) == Some(&b'#') {
        j += 1;
    }
    (bytes.get(j) == Some(&b'"')).then_some((j - i - 1, j + 1))
}

/// A character literal (`'a'`, `'\n'`, `'\u{1F600}'`) or a lifetime
/// (`'a`): where the code after it starts.
fn skip_char(bytes: &[u8], i: usize) -> usize {
    if bytes.get(i + 1) == Some(&b'\\') {
        let mut j = i + 2;
        while j < bytes.len() && bytes[j] != b'\'' {
            j += 1;
        }
        return (j + 1).min(bytes.len());
    }
    // One character (of any UTF-8 length) then a quote: a char literal.
    let len = bytes.get(i + 1).map_or(1, |&b| {
        if b >= 0xF0 {
            4
        } else if b >= 0xE0 {
            3
        } else if b >= 0xC0 {
            2
        } else {
            1
        }
    });
    if bytes.get(i + 1 + len) == Some(&b'\'') {
        i + 2 + len
    } else {
        i + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_checking_macros_are_called_by_path() {
        assert_eq!(
            qualify_std_macros("assert_eq!(add(2, 2), 4);\nassert!(ok, \"x\");"),
            "std::assert_eq!(add(2, 2), 4);\nstd::assert!(ok, \"x\");"
        );
        assert_eq!(
            qualify_std_macros("if x { panic!(\"no\") } else { debug_assert_ne!(a, b) }"),
            "if x { std::panic!(\"no\") } else { std::debug_assert_ne!(a, b) }"
        );
    }

    #[test]
    fn strings_comments_paths_and_other_macros_are_left_alone() {
        for code in [
            "let s = \"assert_eq!(1, 2)\";",
            "let s = r#\"assert!(x) \"quoted\" \"#;",
            "// assert!(false)\nlet x = 1;",
            "/* assert!(x) /* nested */ assert!(y) */ let y = 2;",
            "std::assert!(x); core::assert_eq!(a, b); ::std::panic!();",
            "println!(\"{}\", x); vec![1]; my_assert!(x); x != y;",
            "let c = '\"'; let d = '\\''; fn f<'a>(x: &'a str) {}",
        ] {
            assert_eq!(qualify_std_macros(code), code, "{code}");
        }
    }

    #[test]
    fn code_after_a_string_or_char_is_still_rewritten() {
        assert_eq!(
            qualify_std_macros("let c = '\"'; assert!(c == '\"');"),
            "let c = '\"'; std::assert!(c == '\"');"
        );
        assert_eq!(
            qualify_std_macros("let s = \"a\\\"b\"; assert_eq!(s, s)"),
            "let s = \"a\\\"b\"; std::assert_eq!(s, s)"
        );
    }
}
