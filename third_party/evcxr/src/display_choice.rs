// Academy Lab patch (issue 18): not in evcxr 0.22.0.

//! Choosing the Debug display of a cell's final expression up front, when
//! the expression cannot have an `evcxr_display` method.
//!
//! evcxr shows a cell's final expression by compiling
//! `(expr).evcxr_display();` first and, when that fails (the common case:
//! numbers, strings, vectors), compiling again with `{:?}`. The failed
//! attempt costs a whole rustc front end per cell, about a quarter of a
//! trivial cell's time. A literal has no such method, and neither has a
//! variable whose type (known from rust-analyzer before the first compile)
//! is a primitive, a tuple, an array or a well-known std type that does not
//! dereference to its contents (not `Box`, `Rc`, `Arc` or `Cow`, through
//! which method calls reach the inner type's `evcxr_display`), because only
//! the crate that defines a type can give it an inherent method. So for
//! those the Debug code is compiled directly, unless the session's code
//! could give them the method or shadow the type's name: it mentions
//! `evcxr_display` (a trait of the user's), imports a glob from outside
//! std (a dependency's trait or type), or defines or imports something
//! under the type's name.

use ra_ap_syntax::AstNode;
use ra_ap_syntax::SyntaxNode;
use ra_ap_syntax::ast;

/// What a final expression is, when that can decide its display.
#[derive(Clone, Debug)]
pub(crate) enum Subject {
    Literal,
    Variable(String),
}

impl Subject {
    pub(crate) fn of(node: &SyntaxNode) -> Option<Subject> {
        match ast::Expr::cast(node.clone())? {
            ast::Expr::Literal(_) => Some(Subject::Literal),
            ast::Expr::PathExpr(path) => {
                let name = path.path()?.as_single_name_ref()?;
                Some(Subject::Variable(name.text().to_string()))
            }
            _ => None,
        }
    }
}

/// Outermost type names that std (or the language) defines, for which no
/// user crate can write an inherent method, and which dereference to no
/// user type (`Vec` and `String` reach slices and `str` only).
#[rustfmt::skip]
const STD_TYPES: &[&str] = &[
    "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
    "f32", "f64", "bool", "char", "str", "String", "Vec", "VecDeque", "Option", "Result",
    "HashMap", "HashSet", "BTreeMap", "BTreeSet", "BinaryHeap", "Range", "RangeInclusive",
    "Duration", "Ordering", "Cell", "RefCell", "PathBuf", "OsString",
];

/// Whether the session's items and imports (`user_code`) could give any
/// value an `evcxr_display` method: they mention it, or import a glob from
/// outside std.
pub(crate) fn may_add_display(user_code: &str) -> bool {
    mentions(user_code, "evcxr_display")
        || user_code.lines().any(|line| {
            let line = line.trim_start();
            let Some(path) = line
                .strip_prefix("pub ")
                .unwrap_or(line)
                .strip_prefix("use ")
            else {
                return false;
            };
            let path = path.trim_start().trim_start_matches("::");
            path.contains('*')
                && !["std::", "core::", "alloc::"]
                    .iter()
                    .any(|root| path.starts_with(root))
        })
}

/// Whether a value of type `type_name` (as rust-analyzer writes it) is
/// shown with Debug by evcxr anyway, given the session's items and imports
/// (`user_code`), once [`may_add_display`] said no.
pub(crate) fn is_std_type(type_name: &str, user_code: &str) -> bool {
    let mut t = type_name.trim();
    while let Some(rest) = t.strip_prefix('&') {
        t = rest.trim_start();
        if let Some(rest) = t.strip_prefix('\'') {
            t = rest
                .trim_start_matches(|c: char| c.is_alphanumeric() || c == '_')
                .trim_start();
        }
        if let Some(rest) = t.strip_prefix("mut ") {
            t = rest.trim_start();
        }
    }
    if t.starts_with('(') || t.starts_with('[') {
        return true;
    }
    let head = t.split('<').next().unwrap_or("").trim();
    let (prefix, name) = head.rsplit_once("::").unwrap_or(("", head));
    let std_path = prefix.is_empty()
        || ["std", "core", "alloc"]
            .iter()
            .any(|root| prefix == *root || prefix.starts_with(&format!("{root}::")));
    std_path && STD_TYPES.contains(&name) && !mentions(user_code, name)
}

/// Whether `word` occurs in `code` as a whole identifier.
fn mentions(code: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}
