//! The gateway's own notices to a kernel's clients, and the filter that keeps
//! a kernel from forging them.
//!
//! A notice (a coming cull or reclaim) is an iopub `display_data` with plain
//! text for any client and [`NOTICE_MIMETYPE`] for ours, which shows it as a
//! banner. Only the gateway may send that mimetype: output from a cell that
//! carries it loses it on the way ([`strip_forged_notice`]), so code in a
//! cell cannot dress its output up as a gateway warning ("your kernel is
//! being reclaimed, log in again here").

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::wire::RawMessage;

/// The mimetype of the gateway's own notices.
pub const NOTICE_MIMETYPE: &str = "application/vnd.academy.notice+json";

/// What a notice is about, as our UI reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Cull,
    Reclaim,
}

impl NoticeKind {
    fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Cull => "cull",
            NoticeKind::Reclaim => "reclaim",
        }
    }
}

/// A notice as an iopub message of the kernel's session.
pub fn notice(kernel_id: &str, kind: NoticeKind, text: &str, seconds_left: u64) -> RawMessage {
    RawMessage::new_in_session(
        "display_data",
        kernel_id,
        json!({
            "data": {
                "text/plain": text,
                NOTICE_MIMETYPE: {"kind": kind.as_str(), "message": text, "seconds_left": seconds_left},
            },
            "metadata": {},
            "transient": {},
        }),
    )
}

/// Takes [`NOTICE_MIMETYPE`] out of a kernel's own output; the rest of the
/// bundle stays. Returns whether anything was taken out.
pub fn strip_forged_notice(msg: &mut RawMessage) -> bool {
    #[derive(serde::Deserialize)]
    struct Bundle<'a> {
        #[serde(borrow, default)]
        data: HashMap<std::borrow::Cow<'a, str>, serde::de::IgnoredAny>,
    }
    // A scan of the keys only; escapes in a key are decoded, so an escaped
    // spelling of the mimetype is caught too. Content of another shape (a
    // repeated "data", which a browser reads as its last) is looked at whole.
    if let Ok(b) = serde_json::from_slice::<Bundle>(&msg.content)
        && !b.data.contains_key(NOTICE_MIMETYPE)
    {
        return false;
    }
    // Content that is not JSON at all reaches no client as a notice either.
    let Ok(mut content) = serde_json::from_slice::<Value>(&msg.content) else {
        return false;
    };
    let removed = content
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .and_then(|data| data.remove(NOTICE_MIMETYPE))
        .is_some();
    if !removed {
        return false;
    }
    match serde_json::to_vec(&content) {
        Ok(bytes) => {
            msg.content = bytes.into();
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display(content: &str) -> RawMessage {
        let mut m = RawMessage::new_in_session("display_data", "s", json!({}));
        m.content = bytes::Bytes::copy_from_slice(content.as_bytes());
        m
    }

    #[test]
    fn a_kernel_cannot_send_the_gateway_notice_mimetype() {
        // Plain, with the key spelled through JSON escapes, and behind a
        // repeated "data" (a browser's JSON.parse keeps the last).
        for forged in [
            r#"{"data":{"text/plain":"log in again","application/vnd.academy.notice+json":{"kind":"reclaim"}},"metadata":{}}"#,
            r#"{"data":{"text/plain":"log in again","application\/vnd.academy.notice\u002bjson":{"kind":"reclaim"}},"metadata":{}}"#,
            r#"{"data":{"text/plain":"x"},"data":{"text/plain":"log in again","application/vnd.academy.notice+json":{}},"metadata":{}}"#,
        ] {
            let mut m = display(forged);
            assert!(strip_forged_notice(&mut m), "{forged}");
            let v: Value = serde_json::from_slice(&m.content).unwrap();
            assert_eq!(v["data"], json!({"text/plain": "log in again"}));
            assert_eq!(v["metadata"], json!({}));
        }
        // Anything else passes untouched, byte for byte.
        let plain = r#"{"data":{"text/plain":"1","image/png":"iVBOR"},"metadata":{"x":1}}"#;
        let mut m = display(plain);
        assert!(!strip_forged_notice(&mut m));
        assert_eq!(&m.content[..], plain.as_bytes());
    }

    #[test]
    fn the_gateway_notice_survives_its_own_filter_only_by_being_sent_past_it() {
        let mut n = notice("k", NoticeKind::Cull, "stopping", 60);
        let v: Value = serde_json::from_slice(&n.content).unwrap();
        assert_eq!(v["data"][NOTICE_MIMETYPE]["kind"], "cull");
        assert_eq!(v["data"][NOTICE_MIMETYPE]["seconds_left"], 60);
        // The filter runs on what kernels send; the gateway's notices are
        // published after it, so a notice that went through it would be cut.
        assert!(strip_forged_notice(&mut n));
    }
}
