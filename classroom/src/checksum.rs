//! nbgrader's cell checksum, so a released notebook carries the same
//! `metadata.nbgrader.checksum` that `nbgrader generate_assignment` writes
//! and nbgrader tools accept our releases.
//!
//! `utils.compute_checksum`: the MD5 hex digest of, concatenated as UTF-8,
//! the cell's source, its `cell_type`, `str(is_grade)`, `str(is_solution)`,
//! `str(is_locked)` (Python's `True`/`False`), the `grade_id`, and for a
//! grade cell `str(float(points))` (Python's float repr: `2.0`, `0.5`,
//! `1e+16`). `ComputeChecksums` writes it, with `cell_type`, on every
//! grade, solution and locked cell.
//!
//! nbgrader's only use of it that matters for points: a manually graded
//! answer whose checksum still equals the released one gets 0
//! (`determine_grade`). [`crate::score()`] applies that rule by comparing
//! text, which is equivalent because the rebuilt cell's type, flags,
//! grade_id and points all come from the source. MD5 is no protection
//! here, and nothing relies on it being one: nbgrader compares against
//! the checksum in its database, we against the source itself.

use serde_json::Value;

use crate::metadata::{grade_id, is_grade, is_locked, is_solution, points};
use crate::notebook::{cell_type_of, source_of};

/// nbgrader's `compute_checksum` of a cell (see the module docs).
pub fn compute_checksum(cell: &Value) -> String {
    let py_bool = |b: bool| if b { "True" } else { "False" };
    let mut text = String::new();
    text.push_str(source_of(cell));
    text.push_str(cell_type_of(cell));
    text.push_str(py_bool(is_grade(cell)));
    text.push_str(py_bool(is_solution(cell)));
    text.push_str(py_bool(is_locked(cell)));
    text.push_str(grade_id(cell).unwrap_or(""));
    if is_grade(cell) {
        text.push_str(&py_float_repr(points(cell).unwrap_or(0.0)));
    }
    md5_hex(text.as_bytes())
}

/// Python's `repr(float)` for finite values: the shortest round-trip
/// digits, positional for exponents -4..16 (with at least `.0`),
/// scientific with a signed two-digit exponent otherwise.
pub(crate) fn py_float_repr(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let plain = format!("{x}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// MD5 (RFC 1321) as lowercase hex. Written out here rather than pulled in
/// as a dependency: forty lines, checked against the RFC's test suite.
pub(crate) fn md5_hex(input: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i: i32| (f64::from(i + 1).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut message = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_le_bytes());
    for block in message.chunks_exact(64) {
        let m: Vec<u32> = block
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(k[i])
                .wrapping_add(m[g])
                .rotate_left(S[i]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        for (s, v) in state.iter_mut().zip([a, b, c, d]) {
            *s = s.wrapping_add(v);
        }
    }
    state
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn md5_matches_the_rfc_1321_test_suite() {
        let suite = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, digest) in suite {
            assert_eq!(md5_hex(input.as_bytes()), digest, "{input:?}");
        }
    }

    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (2.0, "2.0"),
            (0.5, "0.5"),
            (0.0, "0.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123.25, "123.25"),
        ];
        for (x, repr) in cases {
            assert_eq!(py_float_repr(x), repr);
        }
    }

    #[test]
    fn a_released_answer_cell_has_nbgraders_checksum() {
        // From nbgrader's own docs release (ps1/problem1.ipynb, "squares").
        let cell = json!({"cell_type": "code", "source": "def squares(n):\n    \"\"\"Compute the squares of numbers from 1 to n, such that the \n    ith element of the returned list equals i^2.\n    \n    \"\"\"\n    # YOUR CODE HERE\n    raise NotImplementedError()",
            "metadata": {"nbgrader": {"grade": false, "grade_id": "squares", "locked": false,
                                       "schema_version": 3, "solution": true}}});
        assert_eq!(compute_checksum(&cell), "8f1eab8d02a9520920aa06f8a86a2492");
    }
}
