//! Client-side authenticated encryption of backup objects.
//!
//! ChaCha20-Poly1305 in the STREAM construction (32-bit big-endian segment
//! counter and a last-segment flag): segments cannot be altered, reordered,
//! dropped or cut off without decryption failing. The object is
//!
//! ```text
//! "DRCTLENC" | version (1 byte) | nonce prefix (7 bytes) | sealed segments…
//! ```
//!
//! each segment [`SEGMENT`] bytes of compressed data plus a 16-byte tag. The
//! key never travels with the backup: the manifest names it by its id, a
//! hash of the key, so a restore can tell "wrong key" from "damaged data".

use std::io::{Read, Write};

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::{ChaCha20Poly1305, Key};
use sha2::{Digest, Sha256};

use crate::BackupError;

const MAGIC: &[u8; 8] = b"DRCTLENC";
const VERSION: u8 = 1;
const PREFIX: usize = 7;
const TAG: usize = 16;
/// Plaintext bytes per sealed segment.
pub const SEGMENT: usize = 64 * 1024;
/// Names the scheme in manifests.
pub const SCHEME: &str = "chacha20poly1305-stream-be32";

/// A backup encryption key: 32 bytes, given as 64 hex characters.
#[derive(Clone)]
pub struct BackupKey {
    key: Key,
    /// `sha256:` and the first 16 hex digits of SHA-256 over a label and
    /// the key: names the key without revealing it.
    pub id: String,
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl BackupKey {
    /// Parses key material (64 hex characters, surrounding whitespace ignored).
    pub fn from_hex(material: &str) -> Result<BackupKey, BackupError> {
        let bytes = hex::decode(material.trim()).ok().filter(|b| b.len() == 32).ok_or_else(|| {
            BackupError::Key("a backup key must be 64 hex characters (32 bytes); generate one with `openssl rand -hex 32`".into())
        })?;
        let mut h = Sha256::new();
        h.update(b"drctl backup key id v1\0");
        h.update(&bytes);
        let id = format!("sha256:{}", &hex::encode(h.finalize())[..16]);
        Ok(BackupKey {
            key: *Key::from_slice(&bytes),
            id,
        })
    }
}

/// A `Write` that seals what passes through it, or passes it on unchanged
/// when there is no key.
pub(crate) struct Sealer<W: Write> {
    inner: W,
    stream: Option<EncryptorBE32<ChaCha20Poly1305>>,
    buf: Vec<u8>,
}

fn seal_err(_: chacha20poly1305::aead::Error) -> std::io::Error {
    std::io::Error::other("encryption failed")
}

impl<W: Write> Sealer<W> {
    pub(crate) fn new(mut inner: W, key: Option<&BackupKey>) -> std::io::Result<Self> {
        let stream = match key {
            None => None,
            Some(k) => {
                let prefix: [u8; PREFIX] = uuid::Uuid::new_v4().as_bytes()[..PREFIX]
                    .try_into()
                    .expect("7 bytes");
                inner.write_all(MAGIC)?;
                inner.write_all(&[VERSION])?;
                inner.write_all(&prefix)?;
                Some(EncryptorBE32::from_aead(
                    ChaCha20Poly1305::new(&k.key),
                    prefix.as_ref().into(),
                ))
            }
        };
        Ok(Sealer {
            inner,
            stream,
            buf: Vec::with_capacity(SEGMENT + 1),
        })
    }

    /// Seals the last segment and returns the inner writer.
    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        if let Some(stream) = self.stream.take() {
            let sealed = stream.encrypt_last(self.buf.as_slice()).map_err(seal_err)?;
            self.inner.write_all(&sealed)?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let Some(stream) = self.stream.as_mut() else {
            return self.inner.write(data);
        };
        self.buf.extend_from_slice(data);
        // Keep at least one byte back: the final segment, however short,
        // must be sealed as the last one.
        while self.buf.len() > SEGMENT {
            let sealed = stream
                .encrypt_next(&self.buf[..SEGMENT])
                .map_err(seal_err)?;
            self.inner.write_all(&sealed)?;
            self.buf.drain(..SEGMENT);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A `Read` that opens a sealed object (or passes a plain one through).
pub(crate) struct Opener<R: Read> {
    inner: R,
    stream: Option<DecryptorBE32<ChaCha20Poly1305>>,
    plain: Vec<u8>,
    pos: usize,
    pending: Option<u8>,
    done: bool,
    encrypted: bool,
}

fn open_err(_: chacha20poly1305::aead::Error) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "decryption failed: the backup was altered, or this is not the key it was encrypted with",
    )
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

impl<R: Read> Opener<R> {
    pub(crate) fn new(mut inner: R, key: Option<&BackupKey>) -> std::io::Result<Self> {
        let Some(k) = key else {
            return Ok(Opener {
                inner,
                stream: None,
                plain: Vec::new(),
                pos: 0,
                pending: None,
                done: false,
                encrypted: false,
            });
        };
        let mut header = [0u8; 16];
        if read_full(&mut inner, &mut header)? != 16
            || &header[..8] != MAGIC
            || header[8] != VERSION
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a drctl-encrypted object",
            ));
        }
        let stream = DecryptorBE32::from_aead(ChaCha20Poly1305::new(&k.key), header[9..16].into());
        Ok(Opener {
            inner,
            stream: Some(stream),
            plain: Vec::new(),
            pos: 0,
            pending: None,
            done: false,
            encrypted: true,
        })
    }

    /// Opens the next segment into `plain`; false at the end.
    fn next_segment(&mut self) -> std::io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        let mut seg = vec![0u8; SEGMENT + TAG];
        let mut n = 0;
        if let Some(b) = self.pending.take() {
            seg[0] = b;
            n = 1;
        }
        n += read_full(&mut self.inner, &mut seg[n..])?;
        seg.truncate(n);
        // One byte of look-ahead tells whether this segment is the last.
        let mut peek = [0u8; 1];
        let last = read_full(&mut self.inner, &mut peek)? == 0;
        if last {
            self.done = true;
            let stream = self.stream.take().expect("open until the last segment");
            self.plain = stream.decrypt_last(seg.as_slice()).map_err(open_err)?;
        } else {
            self.pending = Some(peek[0]);
            self.plain = self
                .stream
                .as_mut()
                .expect("open")
                .decrypt_next(seg.as_slice())
                .map_err(open_err)?;
        }
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.encrypted {
            return self.inner.read(buf);
        }
        while self.pos == self.plain.len() {
            if !self.next_segment()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.plain.len() - self.pos);
        buf[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> BackupKey {
        BackupKey::from_hex(&hex::encode([byte; 32])).unwrap()
    }

    fn seal(data: &[u8], k: &BackupKey) -> Vec<u8> {
        let mut s = Sealer::new(Vec::new(), Some(k)).unwrap();
        for chunk in data.chunks(1000) {
            s.write_all(chunk).unwrap();
        }
        s.finish().unwrap()
    }

    fn open(sealed: &[u8], k: &BackupKey) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Opener::new(sealed, Some(k))?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_every_segment_boundary() {
        let k = key(7);
        for len in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            3 * SEGMENT + 17,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&data, &k);
            assert_ne!(&sealed[16..], &data[..], "sealed");
            assert_eq!(open(&sealed, &k).unwrap(), data, "length {len}");
        }
    }

    #[test]
    fn wrong_key_truncation_and_tampering_fail() {
        let data = vec![42u8; 2 * SEGMENT + 5];
        let sealed = seal(&data, &key(1));
        assert!(open(&sealed, &key(2)).is_err(), "wrong key");
        assert!(
            open(&sealed[..sealed.len() - SEGMENT], &key(1)).is_err(),
            "a dropped last segment"
        );
        let mut flipped = sealed.clone();
        flipped[100] ^= 1;
        assert!(open(&flipped, &key(1)).is_err(), "a flipped byte");
    }

    #[test]
    fn key_ids_name_keys_without_revealing_them() {
        let k = key(9);
        assert!(k.id.starts_with("sha256:") && k.id.len() == 23);
        assert_ne!(k.id, key(8).id);
        assert!(
            !format!("{k:?}").contains("0909"),
            "Debug shows no key material"
        );
        assert!(BackupKey::from_hex("abcd").is_err());
    }
}
