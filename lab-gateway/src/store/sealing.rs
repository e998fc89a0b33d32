//! Kernel connections at rest: sealed with a key from a 0600 file beside
//! the database, never written in plain text.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use base64::Engine as _;
use rand::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rusqlite::Connection;

use super::StoreError;

const PREFIX: &str = "sealed-v1:";

/// The key file of the database `c`; `None` for an in-memory database,
/// whose key lives as long as the process.
fn key_file(c: &Connection) -> Option<PathBuf> {
    let db = PathBuf::from(c.path().filter(|p| !p.is_empty())?);
    Some(db.with_file_name("kernel-keys.secret"))
}

fn key(c: &Connection) -> Result<LessSafeKey, StoreError> {
    static MEMORY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let bytes = match key_file(c) {
        None => *MEMORY.get_or_init(|| {
            let mut k = [0u8; 32];
            rand::rng().fill_bytes(&mut k);
            k
        }),
        Some(path) => {
            let io = |source| StoreError::KeyFile {
                path: path.display().to_string(),
                source,
            };
            let mut fresh = [0u8; 32];
            rand::rng().fill_bytes(&mut fresh);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => f
                    .write_all(&fresh)
                    .and_then(|()| f.sync_all())
                    .map_err(io)?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
            let read = std::fs::read(&path).map_err(io)?;
            read.try_into()
                .map_err(|_| io(std::io::Error::other("it does not hold a 32-byte key")))?
        }
    };
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| StoreError::KeyFile {
        path: "(memory)".into(),
        source: std::io::Error::other("not a ChaCha20-Poly1305 key"),
    })?;
    Ok(LessSafeKey::new(unbound))
}

/// `plain`, sealed for the kernel `id` (the row it may be read back from).
pub fn seal(c: &Connection, id: &str, plain: &str) -> Result<String, StoreError> {
    let key = key(c)?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut buf = plain.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(id.as_bytes()),
        &mut buf,
    )
    .map_err(|_| StoreError::KeyFile {
        path: "(seal)".into(),
        source: std::io::Error::other("sealing failed"),
    })?;
    let mut out = nonce.to_vec();
    out.extend(buf);
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(out)
    ))
}

/// What `seal` sealed; a row from before sealing is returned as it is.
pub fn open(c: &Connection, id: &str, stored: &str) -> Result<String, StoreError> {
    let Some(b64) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_owned());
    };
    let bad = |what: &str| StoreError::KeyFile {
        path: key_file(c).map_or("(memory)".into(), |p| p.display().to_string()),
        source: std::io::Error::other(what.to_owned()),
    };
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad("a sealed connection is not base64"))?;
    if raw.len() < NONCE_LEN {
        return Err(bad("a sealed connection is too short"));
    }
    let mut body = raw.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&raw).map_err(|_| bad("bad nonce"))?;
    let plain = key(c)?
        .open_in_place(nonce, Aad::from(id.as_bytes()), &mut body)
        .map_err(|_| bad("a sealed connection does not open with this key"))?;
    String::from_utf8(plain.to_vec()).map_err(|_| bad("a sealed connection is not UTF-8"))
}
