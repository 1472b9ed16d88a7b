//! Typed BLAKE3 digests: a blob digest and a stage key cannot be mixed up.

use std::fmt;
use std::marker::PhantomData;

/// Bytes stored as a file under `objects/`.
#[derive(Debug)]
pub enum Blob {}
/// Everything that determines a stage's outputs.
#[derive(Debug)]
pub enum StageKey {}

/// A 32-byte BLAKE3 digest of something of kind `K`.
pub struct Digest<K> {
    bytes: [u8; 32],
    kind: PhantomData<fn() -> K>,
}

/// The digest of a blob's bytes.
pub type BlobDigest = Digest<Blob>;
/// The key of a stage: what its outputs are cached under.
pub type StageDigest = Digest<StageKey>;

impl<K> Digest<K> {
    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            bytes,
            kind: PhantomData,
        }
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
    /// Full lowercase hex (64 characters), as used in JSON and object paths.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from(self.bytes).to_hex().to_string()
    }
    /// The first 12 hex characters, for logs.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_owned()
    }
    /// Parses 64 hex characters.
    pub fn from_hex(hex: &str) -> Option<Self> {
        blake3::Hash::from_hex(hex)
            .ok()
            .map(|h| Self::from_bytes(*h.as_bytes()))
    }
}

impl BlobDigest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::from_bytes(*blake3::hash(data).as_bytes())
    }
}

impl<K> Clone for Digest<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for Digest<K> {}
impl<K> PartialEq for Digest<K> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl<K> Eq for Digest<K> {}
impl<K> PartialOrd for Digest<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Digest<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}
impl<K> std::hash::Hash for Digest<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}
impl<K> fmt::Debug for Digest<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}
impl<K> fmt::Display for Digest<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl<K> serde::Serialize for Digest<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de, K> serde::Deserialize<'de> for Digest<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_known_answer() {
        let d = BlobDigest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(BlobDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(d.short().len(), 12);
        assert!(BlobDigest::from_hex("zz").is_none());
    }
}
