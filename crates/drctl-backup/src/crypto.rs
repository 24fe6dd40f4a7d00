//! Client-side authenticated encryption of backup objects.
//!
//! ChaCha20-Poly1305 in the STREAM construction (32-bit big-endian segment
//! counter and a last-segment flag): segments cannot be altered, reordered,
//! dropped or cut off without decryption failing. An object written now
//! (format version 2) is
//!
//! ```text
//! "DRCTLENC" | 2 | salt (32 bytes) | nonce prefix (7 bytes) | sealed segments…
//! ```
//!
//! each segment [`SEGMENT`] bytes of compressed data plus a 16-byte tag.
//! Every object is sealed with a key of its own, derived by HKDF-SHA-256
//! from the backup key, the object's random salt, the backup id and the
//! object's key, and every segment carries the backup id and object key as
//! associated data: an object cannot be passed off as another backup's (or
//! another object's), and a nonce is never reused under one key, whatever
//! the number of objects a key seals. Salt and nonce prefix come from the
//! operating system's CSPRNG.
//!
//! Version 1 objects (`"DRCTLENC" | 1 | nonce prefix | segments…`, sealed
//! with the backup key itself, no associated data) still open: buckets hold
//! them.
//!
//! The key never travels with the backup: the manifest names it by its id,
//! a hash of the key, so a restore can tell "wrong key" from "damaged data".

use std::io::{Read, Write};

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

use crate::BackupError;

const MAGIC: &[u8; 8] = b"DRCTLENC";
/// Sealed with the backup key itself; no associated data. Read only.
const VERSION_1: u8 = 1;
/// Sealed with a per-object derived key; backup id and object key bound in.
const VERSION_2: u8 = 2;
const SALT: usize = 32;
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

    /// The key that seals one object (version 2).
    fn object_key(&self, salt: &[u8; SALT], object: &SealedObject) -> Key {
        let hk = Hkdf::<Sha256>::new(Some(salt), self.key.as_slice());
        let mut info = b"drctl backup object key v2\0".to_vec();
        info.extend_from_slice(&object.associated_data());
        let mut okm = Key::default();
        hk.expand(&info, okm.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA-256 output length");
        okm
    }
}

/// Which object of which backup a sealed stream is: bound into its key and
/// every segment (version 2), so it opens under no other name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedObject {
    pub backup_id: String,
    /// Relative to the backup's prefix (`base.tar.zst`), as in the manifest.
    pub object_key: String,
}

impl SealedObject {
    pub fn new(backup_id: &str, object_key: &str) -> SealedObject {
        SealedObject {
            backup_id: backup_id.to_string(),
            object_key: object_key.to_string(),
        }
    }

    /// Length-prefixed, so no two (backup, object) pairs encode alike.
    fn associated_data(&self) -> Vec<u8> {
        let mut out = b"drctl backup object\0".to_vec();
        for part in [&self.backup_id, &self.object_key] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|e| {
        std::io::Error::other(format!("no randomness from the operating system: {e}"))
    })?;
    Ok(out)
}

/// A `Write` that seals what passes through it, or passes it on unchanged
/// when there is no key.
pub(crate) struct Sealer<W: Write> {
    inner: W,
    stream: Option<EncryptorBE32<ChaCha20Poly1305>>,
    aad: Vec<u8>,
    buf: Vec<u8>,
}

fn seal_err(_: chacha20poly1305::aead::Error) -> std::io::Error {
    std::io::Error::other("encryption failed")
}

impl<W: Write> Sealer<W> {
    pub(crate) fn new(
        mut inner: W,
        key: Option<&BackupKey>,
        object: &SealedObject,
    ) -> std::io::Result<Self> {
        let stream = match key {
            None => None,
            Some(k) => {
                let salt: [u8; SALT] = random()?;
                let prefix: [u8; PREFIX] = random()?;
                inner.write_all(MAGIC)?;
                inner.write_all(&[VERSION_2])?;
                inner.write_all(&salt)?;
                inner.write_all(&prefix)?;
                Some(EncryptorBE32::from_aead(
                    ChaCha20Poly1305::new(&k.object_key(&salt, object)),
                    prefix.as_ref().into(),
                ))
            }
        };
        Ok(Sealer {
            inner,
            stream,
            aad: object.associated_data(),
            buf: Vec::with_capacity(SEGMENT + 1),
        })
    }

    /// Seals the last segment and returns the inner writer.
    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        if let Some(stream) = self.stream.take() {
            let sealed = stream
                .encrypt_last(Payload {
                    msg: self.buf.as_slice(),
                    aad: &self.aad,
                })
                .map_err(seal_err)?;
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
                .encrypt_next(Payload {
                    msg: &self.buf[..SEGMENT],
                    aad: &self.aad,
                })
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
pub struct Opener<R: Read> {
    inner: R,
    stream: Option<DecryptorBE32<ChaCha20Poly1305>>,
    /// Empty for version 1 objects.
    aad: Vec<u8>,
    plain: Vec<u8>,
    pos: usize,
    pending: Option<u8>,
    done: bool,
    encrypted: bool,
}

fn open_err(_: chacha20poly1305::aead::Error) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "decryption failed: the backup was altered, belongs to another backup, or this is not the key it was encrypted with",
    )
}

fn not_sealed() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "not a drctl-encrypted object (or one of a newer format than this drctl reads)",
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
    /// Opens `object` read from `inner` with `key`; without a key, passes
    /// the bytes through unchanged (the caller decides whether plaintext is
    /// acceptable).
    pub fn new(
        mut inner: R,
        key: Option<&BackupKey>,
        object: &SealedObject,
    ) -> std::io::Result<Self> {
        let Some(k) = key else {
            return Ok(Opener {
                inner,
                stream: None,
                aad: Vec::new(),
                plain: Vec::new(),
                pos: 0,
                pending: None,
                done: false,
                encrypted: false,
            });
        };
        let mut magic = [0u8; 9];
        if read_full(&mut inner, &mut magic)? != magic.len() || &magic[..8] != MAGIC {
            return Err(not_sealed());
        }
        let (cipher, prefix, aad) = match magic[8] {
            VERSION_1 => {
                let mut prefix = [0u8; PREFIX];
                if read_full(&mut inner, &mut prefix)? != PREFIX {
                    return Err(not_sealed());
                }
                (ChaCha20Poly1305::new(&k.key), prefix, Vec::new())
            }
            VERSION_2 => {
                let mut header = [0u8; SALT + PREFIX];
                if read_full(&mut inner, &mut header)? != header.len() {
                    return Err(not_sealed());
                }
                let salt: [u8; SALT] = header[..SALT].try_into().expect("32 bytes");
                let prefix: [u8; PREFIX] = header[SALT..].try_into().expect("7 bytes");
                (
                    ChaCha20Poly1305::new(&k.object_key(&salt, object)),
                    prefix,
                    object.associated_data(),
                )
            }
            _ => return Err(not_sealed()),
        };
        Ok(Opener {
            inner,
            stream: Some(DecryptorBE32::from_aead(cipher, prefix.as_ref().into())),
            aad,
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
        let payload = Payload {
            msg: seg.as_slice(),
            aad: &self.aad,
        };
        if last {
            self.done = true;
            let Some(stream) = self.stream.take() else {
                return Ok(false);
            };
            self.plain = stream.decrypt_last(payload).map_err(open_err)?;
        } else {
            self.pending = Some(peek[0]);
            let Some(stream) = self.stream.as_mut() else {
                return Ok(false);
            };
            self.plain = stream.decrypt_next(payload).map_err(open_err)?;
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

    fn object() -> SealedObject {
        SealedObject::new("20261206T190000Z-abcdef", "base.tar.zst")
    }

    fn seal_as(data: &[u8], k: &BackupKey, object: &SealedObject) -> Vec<u8> {
        let mut s = Sealer::new(Vec::new(), Some(k), object).unwrap();
        for chunk in data.chunks(1000) {
            s.write_all(chunk).unwrap();
        }
        s.finish().unwrap()
    }

    fn seal(data: &[u8], k: &BackupKey) -> Vec<u8> {
        seal_as(data, k, &object())
    }

    fn open_as(sealed: &[u8], k: &BackupKey, object: &SealedObject) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Opener::new(sealed, Some(k), object)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn open(sealed: &[u8], k: &BackupKey) -> std::io::Result<Vec<u8>> {
        open_as(sealed, k, &object())
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
            assert_ne!(&sealed[9 + SALT + PREFIX..], &data[..], "sealed");
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

    #[test]
    fn every_bit_of_the_nonce_prefix_and_salt_is_random() {
        // The prefix used to be cut from a UUIDv4, whose version bits are
        // fixed: 52 random bits instead of 56. Over 64 objects every bit of
        // a random field takes both values (a false alarm has odds of 2^-57).
        let k = key(3);
        let headers: Vec<Vec<u8>> = (0..64)
            .map(|_| seal(b"x", &k)[9..9 + SALT + PREFIX].to_vec())
            .collect();
        for bit in 0..(SALT + PREFIX) * 8 {
            let ones = headers
                .iter()
                .filter(|h| h[bit / 8] & (1 << (bit % 8)) != 0)
                .count();
            assert!(
                0 < ones && ones < headers.len(),
                "bit {bit} of the salt and nonce prefix never changes"
            );
        }
    }

    #[test]
    fn an_object_sealed_for_one_backup_does_not_open_as_another() {
        let k = key(4);
        let data = vec![5u8; SEGMENT + 10];
        let sealed = seal(&data, &k);
        assert_eq!(open(&sealed, &k).unwrap(), data);
        let other_backup = SealedObject::new("20261206T190001Z-123456", "base.tar.zst");
        assert!(
            open_as(&sealed, &k, &other_backup).is_err(),
            "another backup id"
        );
        let other_object = SealedObject::new(&object().backup_id, "other.tar.zst");
        assert!(
            open_as(&sealed, &k, &other_object).is_err(),
            "another object key"
        );
    }

    #[test]
    fn version_1_objects_still_open() {
        // As drctl wrote them before version 2: the backup key itself, a
        // 7-byte prefix, no associated data.
        let k = key(6);
        let data: Vec<u8> = (0..2 * SEGMENT + 3).map(|i| (i % 13) as u8).collect();
        let prefix = [1u8, 2, 3, 4, 5, 6, 7];
        let mut v1 = MAGIC.to_vec();
        v1.push(VERSION_1);
        v1.extend_from_slice(&prefix);
        let mut enc =
            EncryptorBE32::from_aead(ChaCha20Poly1305::new(&k.key), prefix.as_ref().into());
        let chunks: Vec<&[u8]> = data.chunks(SEGMENT).collect();
        let (last, rest) = chunks.split_last().unwrap();
        for chunk in rest {
            v1.extend(enc.encrypt_next(*chunk).unwrap());
        }
        v1.extend(enc.encrypt_last(*last).unwrap());
        assert_eq!(open(&v1, &k).unwrap(), data);
        assert!(open(&v1, &key(7)).is_err(), "wrong key");
    }
}
