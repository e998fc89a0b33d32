//! Whether a Rust cell is complete, for `is_complete_request`.
//!
//! Consoles ask this after every Enter. Compiling would take seconds, so we
//! scan brackets, strings and comments instead: unclosed means incomplete,
//! a closing bracket that does not match means invalid.

use crate::engine::Completeness;

pub fn check(code: &str) -> Completeness {
    let chars: Vec<char> = code.chars().collect();
    let mut stack: Vec<char> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        let next = chars.get(i + 1).copied();
        match ch {
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if next == Some('*') => {
                let mut depth = 1;
                i += 2;
                while i < chars.len() && depth > 0 {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 1;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 1;
                    }
                    i += 1;
                }
                if depth > 0 {
                    return incomplete(0);
                }
                continue;
            }
            'r' if matches!(next, Some('"') | Some('#')) && !is_ident_before(&chars, i) => {
                // Raw string: r#"..."#
                let mut j = i + 1;
                let mut hashes = 0;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if chars.get(j) != Some(&'"') {
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= chars.len() {
                        return incomplete(0);
                    }
                    if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                        i = j + 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                continue;
            }
            '"' => {
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return incomplete(0),
                        Some('\\') => j += 2,
                        Some('"') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
                continue;
            }
            '\'' => {
                // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
                if let Some(end) = char_literal_end(&chars, i) {
                    i = end + 1;
                    continue;
                }
            }
            '(' | '[' | '{' => stack.push(ch),
            ')' | ']' | '}' => {
                let want = match ch {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(want) {
                    return Completeness::Invalid;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if stack.is_empty() {
        Completeness::Complete
    } else {
        incomplete(stack.len())
    }
}

fn incomplete(depth: usize) -> Completeness {
    Completeness::Incomplete {
        indent: "    ".repeat(depth.max(1)),
    }
}

fn is_ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1)? {
        '\\' => (i + 3..(i + 12).min(chars.len())).find(|&j| chars[j] == '\''),
        _ if chars.get(i + 2) == Some(&'\'') => Some(i + 2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_block_is_incomplete_and_closed_is_complete() {
        assert!(matches!(check("fn f() {"), Completeness::Incomplete { .. }));
        assert_eq!(check("fn f() { 1 }"), Completeness::Complete);
        assert_eq!(check("let x = 5;"), Completeness::Complete);
    }

    #[test]
    fn brackets_inside_strings_chars_and_comments_do_not_count() {
        assert_eq!(check(r#"let s = "{("; // ["#), Completeness::Complete);
        assert_eq!(check("let c = '{'; /* ( */"), Completeness::Complete);
        assert_eq!(check(r##"let r = r#"{"#;"##), Completeness::Complete);
        assert_eq!(check("fn f<'a>(x: &'a str) {}"), Completeness::Complete);
    }

    #[test]
    fn unterminated_string_is_incomplete_and_mismatch_is_invalid() {
        assert!(matches!(
            check("let s = \"abc"),
            Completeness::Incomplete { .. }
        ));
        assert_eq!(check("let x = (1];"), Completeness::Invalid);
        assert_eq!(check("}"), Completeness::Invalid);
    }
}
