//! Jupyter messages as the gateway relays them: raw, signed, unparsed.
//!
//! The gateway never needs a message's content, so it keeps the four JSON
//! parts as bytes and only reads the header (msg_id, msg_type). This is the
//! one place that knows the ZeroMQ framing and the HMAC; it is also what
//! converts between ZeroMQ frames and the websocket's legacy JSON.

use bytes::Bytes;
use ring::hmac;
use serde::Deserialize;
use serde_json::value::RawValue;

const DELIMITER: &[u8] = b"<IDS|MSG>";

/// Why a frame could not become a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("no <IDS|MSG> delimiter")]
    NoDelimiter,
    #[error("too few parts: {0}")]
    TooFewParts(usize),
    #[error("the HMAC signature does not verify")]
    BadSignature,
    #[error("not a JSON message: {0}")]
    Json(String),
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    /// A part that is not exactly one JSON object, or repeats a key: a
    /// reader that takes the first of two keys and one that takes the last
    /// would see two different messages.
    #[error("the {part} is not one JSON object without repeated keys: {why}")]
    BadPart { part: &'static str, why: String },
}

/// The names of the four JSON parts, in wire order.
const PART_NAMES: [&str; 4] = ["header", "parent header", "metadata", "content"];

/// Checks that `bytes` is exactly one JSON object and that no object in it,
/// at any depth, repeats a key. Empty parts (some kernels send them for an
/// empty parent header) read as `{}`.
fn check_part(bytes: &Bytes, part: &'static str) -> Result<Bytes, WireError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"{}"));
    }
    let bad = |why: String| WireError::BadPart { part, why };
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(bad("not an object".into()));
    }
    serde_json::from_slice::<unique::Unique>(bytes).map_err(|e| bad(e.to_string()))?;
    Ok(bytes.clone())
}

/// A serde visitor that reads any JSON value without keeping it, refusing
/// an object that repeats a key.
mod unique {
    use std::borrow::Cow;
    use std::collections::HashSet;
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    pub struct Unique;

    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UniqueVisitor)
        }
    }

    struct Key<'de>(Cow<'de, str>);

    impl<'de> Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct KeyVisitor;
            impl<'de> Visitor<'de> for KeyVisitor {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_owned())))
                }
            }
            d.deserialize_str(KeyVisitor)
        }
    }

    struct UniqueVisitor;

    impl<'de> Visitor<'de> for UniqueVisitor {
        type Value = Unique;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
            while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                if seen.contains(&key) {
                    return Err(de::Error::custom(format_args!(
                        "the key {key:?} is repeated"
                    )));
                }
                map.next_value::<Unique>()?;
                seen.insert(key);
            }
            Ok(Unique)
        }
    }
}

/// HMAC-SHA256 over header, parent header, metadata and content.
#[derive(Clone)]
pub struct Signer(Option<hmac::Key>);

impl Signer {
    pub fn new(key: &str) -> Self {
        Signer((!key.is_empty()).then(|| hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes())))
    }

    fn sign(&self, parts: [&[u8]; 4]) -> String {
        match &self.0 {
            None => String::new(),
            Some(key) => {
                let mut ctx = hmac::Context::with_key(key);
                for p in parts {
                    ctx.update(p);
                }
                hex::encode(ctx.sign().as_ref())
            }
        }
    }

    fn verify(&self, signature: &[u8], parts: [&[u8]; 4]) -> bool {
        match &self.0 {
            None => true,
            Some(key) => {
                let Ok(sig) = hex::decode(signature) else {
                    return false;
                };
                let msg: Vec<u8> = parts.concat();
                hmac::verify(key, &msg, &sig).is_ok()
            }
        }
    }
}

/// The channel a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Shell,
    Control,
    Stdin,
    Iopub,
}

impl Channel {
    /// Whether a client may send `msg_type` on this channel: requests on
    /// shell and control (and comm messages on shell), input replies on
    /// stdin, nothing on iopub. A reply or a broadcast type sent by a client
    /// would reach the kernel as something it never expects.
    pub fn accepts_from_client(self, msg_type: &str) -> bool {
        match self {
            Channel::Shell => {
                msg_type.ends_with("_request")
                    || matches!(msg_type, "comm_open" | "comm_msg" | "comm_close")
            }
            Channel::Control => msg_type.ends_with("_request"),
            Channel::Stdin => msg_type == "input_reply",
            Channel::Iopub => false,
        }
    }

    pub fn parse(s: &str) -> Result<Channel, WireError> {
        Ok(match s {
            "shell" => Channel::Shell,
            "control" => Channel::Control,
            "stdin" => Channel::Stdin,
            "iopub" => Channel::Iopub,
            other => return Err(WireError::UnknownChannel(other.to_owned())),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Shell => "shell",
            Channel::Control => "control",
            Channel::Stdin => "stdin",
            Channel::Iopub => "iopub",
        }
    }
}

/// One message, its JSON parts kept as bytes.
///
/// The header is read at most once (`ids`): the relay needs msg_id and
/// msg_type for status tracking, rate limits and legacy framing, and each of
/// those would otherwise parse it again. Headers are never changed after a
/// message is made.
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub header: Bytes,
    pub parent_header: Bytes,
    pub metadata: Bytes,
    pub content: Bytes,
    pub buffers: Vec<Bytes>,
    ids: std::sync::OnceLock<(String, String)>,
}

#[derive(Deserialize)]
struct HeaderIds<'a> {
    #[serde(borrow, default)]
    msg_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    msg_type: Option<std::borrow::Cow<'a, str>>,
}

impl RawMessage {
    /// The header's msg_id and msg_type (empty when absent), parsed once.
    pub fn ids(&self) -> (&str, &str) {
        let (id, ty) =
            self.ids
                .get_or_init(|| match serde_json::from_slice::<HeaderIds>(&self.header) {
                    Ok(h) => (
                        h.msg_id.map(|c| c.into_owned()).unwrap_or_default(),
                        h.msg_type.map(|c| c.into_owned()).unwrap_or_default(),
                    ),
                    Err(_) => (String::new(), String::new()),
                });
        (id, ty)
    }

    /// Parses ZeroMQ frames (identities, delimiter, signature, parts).
    pub fn from_frames(frames: Vec<Bytes>, signer: &Signer) -> Result<RawMessage, WireError> {
        let at = frames
            .iter()
            .position(|f| f.as_ref() == DELIMITER)
            .ok_or(WireError::NoDelimiter)?;
        let rest = &frames[at + 1..];
        if rest.len() < 5 {
            return Err(WireError::TooFewParts(rest.len()));
        }
        let parts = [
            rest[1].as_ref(),
            rest[2].as_ref(),
            rest[3].as_ref(),
            rest[4].as_ref(),
        ];
        if !signer.verify(&rest[0], parts) {
            return Err(WireError::BadSignature);
        }
        RawMessage::checked([&rest[1], &rest[2], &rest[3], &rest[4]], rest[5..].to_vec())
    }

    /// A message from its four JSON parts, each checked by [`check_part`]:
    /// what the gateway reads of a message (ids, status, mimetypes) is then
    /// what every client reads.
    fn checked(parts: [&Bytes; 4], buffers: Vec<Bytes>) -> Result<RawMessage, WireError> {
        if parts[0].iter().all(u8::is_ascii_whitespace) {
            return Err(WireError::BadPart {
                part: PART_NAMES[0],
                why: "empty".into(),
            });
        }
        Ok(RawMessage {
            header: check_part(parts[0], PART_NAMES[0])?,
            parent_header: check_part(parts[1], PART_NAMES[1])?,
            metadata: check_part(parts[2], PART_NAMES[2])?,
            content: check_part(parts[3], PART_NAMES[3])?,
            buffers,
            ids: Default::default(),
        })
    }

    /// Signed frames for a DEALER socket (no identities).
    pub fn to_frames(&self, signer: &Signer) -> Vec<Bytes> {
        let sig = signer.sign([
            &self.header,
            &self.parent_header,
            &self.metadata,
            &self.content,
        ]);
        let mut frames = Vec::with_capacity(6 + self.buffers.len());
        frames.push(Bytes::from_static(DELIMITER));
        frames.push(Bytes::from(sig));
        frames.extend([
            self.header.clone(),
            self.parent_header.clone(),
            self.metadata.clone(),
            self.content.clone(),
        ]);
        frames.extend(self.buffers.iter().cloned());
        frames
    }

    /// Parses one legacy-protocol websocket text frame.
    pub fn from_legacy_json(text: &str) -> Result<(Channel, RawMessage), WireError> {
        #[derive(Deserialize)]
        struct Legacy<'a> {
            #[serde(borrow)]
            header: &'a RawValue,
            #[serde(borrow, default)]
            parent_header: Option<&'a RawValue>,
            #[serde(borrow, default)]
            metadata: Option<&'a RawValue>,
            #[serde(borrow)]
            content: &'a RawValue,
            #[serde(default)]
            channel: Option<String>,
        }
        let m: Legacy = serde_json::from_str(text).map_err(|e| WireError::Json(e.to_string()))?;
        let channel = Channel::parse(m.channel.as_deref().unwrap_or("shell"))?;
        let part = |v: Option<&RawValue>| Bytes::from(v.map_or("{}", |v| v.get()).to_owned());
        let msg = RawMessage::checked(
            [
                &part(Some(m.header)),
                &part(m.parent_header),
                &part(m.metadata),
                &part(Some(m.content)),
            ],
            Vec::new(),
        )?;
        Ok((channel, msg))
    }

    /// The legacy-protocol JSON text of this message on `channel`.
    pub fn to_legacy_json(&self, channel: Channel) -> String {
        /// The legacy frame, written by serde over the parts as they are:
        /// a part that is not valid JSON becomes `null`, never spliced text.
        #[derive(serde::Serialize)]
        struct Legacy<'a> {
            header: &'a RawValue,
            msg_id: &'a str,
            msg_type: &'a str,
            parent_header: &'a RawValue,
            metadata: &'a RawValue,
            content: &'a RawValue,
            buffers: [u8; 0],
            channel: &'a str,
        }
        fn raw(b: &Bytes) -> &RawValue {
            serde_json::from_slice::<&RawValue>(b).unwrap_or(RawValue::NULL)
        }
        let (msg_id, msg_type) = self.ids();
        let frame = Legacy {
            header: raw(&self.header),
            msg_id,
            msg_type,
            parent_header: raw(&self.parent_header),
            metadata: raw(&self.metadata),
            content: raw(&self.content),
            buffers: [],
            channel: channel.as_str(),
        };
        serde_json::to_string(&frame).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Parses one `v1.kernel.websocket.jupyter.org` binary frame: a count of
    /// little-endian u64 offsets, the offsets, then the channel name and the
    /// parts (header, parent header, metadata, content, buffers...).
    pub fn from_v1(frame: &[u8]) -> Result<(Channel, RawMessage), WireError> {
        let bad = |why: &str| WireError::Json(format!("bad v1 frame: {why}"));
        let word = |i: usize| -> Result<usize, WireError> {
            let b = frame
                .get(i * 8..i * 8 + 8)
                .ok_or_else(|| bad("truncated offsets"))?;
            let v = u64::from_le_bytes(b.try_into().map_err(|_| bad("offset"))?);
            usize::try_from(v).map_err(|_| bad("offset too large"))
        };
        let n = word(0)?;
        if !(6..=1024).contains(&n) {
            return Err(bad("expected at least channel and four parts"));
        }
        let offsets = (1..=n).map(word).collect::<Result<Vec<_>, _>>()?;
        if offsets.windows(2).any(|w| w[0] > w[1]) || offsets[n - 1] > frame.len() {
            return Err(bad("offsets out of order or past the end"));
        }
        let part = |i: usize| Bytes::copy_from_slice(&frame[offsets[i]..offsets[i + 1]]);
        let channel = std::str::from_utf8(&frame[offsets[0]..offsets[1]])
            .map_err(|_| bad("channel is not UTF-8"))?;
        let channel = Channel::parse(channel)?;
        let msg = RawMessage::checked(
            [&part(1), &part(2), &part(3), &part(4)],
            (5..n - 1).map(part).collect(),
        )?;
        Ok((channel, msg))
    }

    /// This message as a v1 binary frame on `channel`.
    pub fn to_v1(&self, channel: Channel) -> Vec<u8> {
        let mut parts: Vec<&[u8]> = vec![
            channel.as_str().as_bytes(),
            &self.header,
            &self.parent_header,
            &self.metadata,
            &self.content,
        ];
        parts.extend(self.buffers.iter().map(|b| b.as_ref()));
        let n = parts.len() + 1;
        let mut offsets = Vec::with_capacity(n);
        let mut at = 8 * (1 + n);
        offsets.push(at);
        for p in &parts {
            at += p.len();
            offsets.push(at);
        }
        let mut out = Vec::with_capacity(at);
        out.extend_from_slice(&(n as u64).to_le_bytes());
        for o in offsets {
            out.extend_from_slice(&(o as u64).to_le_bytes());
        }
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    }

    /// A request from the gateway itself (kernel_info, shutdown, interrupt),
    /// from jupyter-protocol's typed content.
    pub fn request(content: impl Into<jupyter_protocol::JupyterMessageContent>) -> RawMessage {
        let content = content.into();
        let body = serde_json::to_value(&content).unwrap_or_else(|_| serde_json::json!({}));
        RawMessage::new_in_session(content.message_type(), "lab-gateway", body)
    }

    /// A new message from the gateway in a given session (a kernel's status).
    pub fn new_in_session(msg_type: &str, session: &str, content: serde_json::Value) -> RawMessage {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let header = serde_json::json!({
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": "lab-gateway",
            "session": session,
            "date": crate::timefmt::iso(chrono::Utc::now()),
            "version": "5.3",
        });
        RawMessage {
            header: Bytes::from(header.to_string()),
            parent_header: Bytes::from_static(b"{}"),
            metadata: Bytes::from_static(b"{}"),
            content: Bytes::from(content.to_string()),
            buffers: Vec::new(),
            ids: std::sync::OnceLock::from((msg_id, msg_type.to_owned())),
        }
    }

    /// The `parent_header.msg_id`, to match replies to requests.
    pub fn parent_msg_id(&self) -> Option<String> {
        serde_json::from_slice::<HeaderIds>(&self.parent_header)
            .ok()
            .and_then(|h| h.msg_id.map(|c| c.into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_wrong_key_fails() {
        let m = RawMessage::request(jupyter_protocol::KernelInfoRequest {});
        let frames = m.to_frames(&Signer::new("k"));
        let back = RawMessage::from_frames(frames.clone(), &Signer::new("k")).unwrap();
        assert_eq!(back.ids().1, "kernel_info_request");
        assert_eq!(
            RawMessage::from_frames(frames, &Signer::new("other")).unwrap_err(),
            WireError::BadSignature
        );
    }

    #[test]
    fn legacy_json_keeps_parts_verbatim() {
        let text = r#"{"header":{"msg_id":"a","msg_type":"execute_request"},"parent_header":{},"metadata":{},"content":{"code":"1", "extra": [1,2]},"channel":"shell"}"#;
        let (ch, m) = RawMessage::from_legacy_json(text).unwrap();
        assert_eq!(ch, Channel::Shell);
        assert_eq!(&m.content[..], br#"{"code":"1", "extra": [1,2]}"#);
        let out: serde_json::Value =
            serde_json::from_str(&m.to_legacy_json(Channel::Iopub)).unwrap();
        assert_eq!(out["msg_type"], "execute_request");
        assert_eq!(out["channel"], "iopub");
        assert_eq!(out["content"]["extra"][1], 2);
    }

    #[test]
    fn v1_frames_match_the_reference_transcript_and_round_trip() {
        // The first frame jupyter_server's client sent in the reference capture.
        use base64::Engine as _;
        let frame = base64::engine::general_purpose::STANDARD.decode(
            "BgAAAAAAAAA4AAAAAAAAAD0AAAAAAAAADgEAAAAAAAAQAQAAAAAAABIBAAAAAAAAFAEAAAAAAABzaGVsbHsibXNnX2lkIjogIjc2MzdkN2Q2NGM5ODRkNGViZjMzMTcyNGI4NTk0ZTNmIiwgIm1zZ190eXBlIjogImtlcm5lbF9pbmZvX3JlcXVlc3QiLCAidXNlcm5hbWUiOiAiZ3dfc21va2UiLCAic2Vzc2lvbiI6ICIzYjJiY2MyZDA4YzI0YjE3OTg2MzFkYTcwNWY3YzMyZCIsICJkYXRlIjogIjIwMjYtMTEtMjhUMDQ6NDE6MjQuODIzMTM0WiIsICJ2ZXJzaW9uIjogIjUuMyJ9e317fXt9",
        ).unwrap();
        let (channel, msg) = RawMessage::from_v1(&frame).unwrap();
        assert_eq!(channel, Channel::Shell);
        assert_eq!(msg.ids().1, "kernel_info_request");
        assert_eq!(msg.to_v1(Channel::Shell), frame);
        assert!(RawMessage::from_v1(&frame[..40]).is_err());
    }

    /// Frames as a kernel holding the key would sign them.
    fn signed(parts: [&str; 4]) -> Vec<Bytes> {
        let signer = Signer::new("k");
        let p = parts.map(|p| Bytes::from(p.to_owned()));
        let sig = signer.sign([&p[0], &p[1], &p[2], &p[3]]);
        let mut frames = vec![Bytes::from_static(DELIMITER), Bytes::from(sig)];
        frames.extend(p);
        frames
    }

    #[test]
    fn a_repeated_key_anywhere_in_a_part_is_refused() {
        let signer = Signer::new("k");
        // The gateway's reader took neither key (ids came out empty), the
        // browser takes the last: a forged notice passed the filter.
        let header = r#"{"msg_id":"a","msg_type":"stream","msg_type":"display_data"}"#;
        assert!(RawMessage::from_frames(signed([header, "{}", "{}", "{}"]), &signer).is_err());
        let content = r#"{"data":{"text/plain":"x","text/plain":"y"},"metadata":{}}"#;
        let header = r#"{"msg_id":"a","msg_type":"display_data"}"#;
        assert!(RawMessage::from_frames(signed([header, "{}", "{}", content]), &signer).is_err());
        let legacy = r#"{"header":{"msg_id":"a","msg_type":"execute_request","msg_type":"x"},"content":{},"channel":"shell"}"#;
        assert!(RawMessage::from_legacy_json(legacy).is_err());
        // Repeated keys in different objects are fine; so is an empty parent.
        let ok = r#"{"a":{"k":1},"b":{"k":2}}"#;
        let m = RawMessage::from_frames(signed([header, "", "{}", ok]), &signer).unwrap();
        assert_eq!(&m.parent_header[..], b"{}");
    }

    #[test]
    fn a_part_cannot_smuggle_a_second_header_into_the_legacy_frame() {
        let signer = Signer::new("k");
        let header = r#"{"msg_id":"a","msg_type":"stream"}"#;
        let smuggled =
            r#"{"name":"stdout","text":"hi"},"header":{"msg_id":"b","msg_type":"display_data"}"#;
        assert!(
            RawMessage::from_frames(signed([header, "{}", "{}", smuggled]), &signer).is_err(),
            "a content that is not one JSON object is refused"
        );
        assert!(RawMessage::from_frames(signed(["[]", "{}", "{}", "{}"]), &signer).is_err());
        // Even a message built around the checks is written by a serializer.
        let mut m = RawMessage::from_frames(signed([header, "{}", "{}", "{}"]), &signer).unwrap();
        m.content = Bytes::from(smuggled.to_owned());
        let out: serde_json::Value =
            serde_json::from_str(&m.to_legacy_json(Channel::Iopub)).unwrap();
        assert_eq!(out["header"]["msg_type"], "stream");
        assert!(out["content"].is_null(), "{out}");
    }

    #[test]
    fn bad_legacy_frames_are_named() {
        assert!(matches!(
            RawMessage::from_legacy_json("{nope"),
            Err(WireError::Json(_))
        ));
        let text = r#"{"header":{},"content":{},"channel":"sideways"}"#;
        assert_eq!(
            RawMessage::from_legacy_json(text).unwrap_err(),
            WireError::UnknownChannel("sideways".into())
        );
    }
}
