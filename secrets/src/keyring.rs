//! The Postgres store's encryption keys: AES-256-GCM keys by id, one of them primary. New values
//! are sealed with the primary key and record its id; every key still opens what it sealed, so a
//! rotation is "add a key, make it primary" followed by [`crate::postgres::PostgresStore::reencrypt`].

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Keys by id, one primary.
#[derive(Clone)]
pub struct Keyring {
    primary: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("primary", &self.primary).field("ids", &self.keys.keys()).finish()
    }
}

/// A keyring that cannot be built from the given keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// A key is not base64 of exactly 32 bytes.
    #[error("secret key {0:?} must be the base64 of exactly 32 bytes")]
    BadKey(String),
    /// The primary id names no key.
    #[error("the primary secret key {0:?} is not among the keys")]
    UnknownPrimary(String),
    /// A key id is empty or too long.
    #[error("secret key ids must be 1 to 64 characters of a-z, A-Z, 0-9, '_' and '-': {0:?}")]
    BadId(String),
}

/// A value sealed by a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The key's id.
    pub key_id: String,
    /// 96-bit random nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext with its tag.
    pub ciphertext: Vec<u8>,
}

impl Keyring {
    /// Builds a keyring from base64 keys of 32 bytes by id.
    pub fn new(keys: &BTreeMap<String, String>, primary: &str) -> Result<Self, KeyringError> {
        let mut ring = BTreeMap::new();
        for (id, key) in keys {
            let id_ok = !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !id_ok {
                return Err(KeyringError::BadId(id.clone()));
            }
            let bytes = STANDARD.decode(key.trim()).map_err(|_| KeyringError::BadKey(id.clone()))?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyringError::BadKey(id.clone()))?;
            ring.insert(id.clone(), Aes256Gcm::new(&Key::<Aes256Gcm>::from(bytes)));
        }
        if !ring.contains_key(primary) {
            return Err(KeyringError::UnknownPrimary(primary.to_owned()));
        }
        Ok(Self { primary: primary.to_owned(), keys: ring })
    }

    /// A new random key, base64 of 32 bytes.
    pub fn generate_key() -> String {
        STANDARD.encode(rand::random::<[u8; 32]>())
    }

    /// The id of the key that seals new values.
    pub fn primary(&self) -> &str {
        &self.primary
    }

    /// Seals `plaintext` with the primary key. `context` (the value's tenant and path) is bound as
    /// associated data, so a ciphertext copied to another row does not open.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Sealed {
        let cipher = &self.keys[&self.primary];
        let nonce: [u8; 12] = rand::random();
        let ciphertext = cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .unwrap_or_default(); // AES-GCM encryption fails only past 64 GiB
        Sealed { key_id: self.primary.clone(), nonce: nonce.to_vec(), ciphertext }
    }

    /// Opens a sealed value; `None` when the key is unknown or the value or context was tampered with.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Option<Vec<u8>> {
        let cipher = self.keys.get(&sealed.key_id)?;
        let nonce: [u8; 12] = sealed.nonce.as_slice().try_into().ok()?;
        cipher.decrypt(&Nonce::from(nonce), Payload { msg: &sealed.ciphertext, aad: context.as_bytes() }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[&str], primary: &str, keys: &mut BTreeMap<String, String>) -> Keyring {
        for id in ids {
            keys.entry((*id).to_owned()).or_insert_with(Keyring::generate_key);
        }
        Keyring::new(keys, primary).unwrap()
    }

    #[test]
    fn a_rotated_ring_still_opens_old_values_and_seals_with_the_new_key() {
        let mut keys = BTreeMap::new();
        let old = ring(&["k1"], "k1", &mut keys);
        let sealed = old.seal(b"hunter2", "acme/global/A");
        assert_eq!(sealed.key_id, "k1");
        let new = ring(&["k1", "k2"], "k2", &mut keys);
        assert_eq!(new.open(&sealed, "acme/global/A").unwrap(), b"hunter2");
        assert_eq!(new.seal(b"x", "c").key_id, "k2");
    }

    #[test]
    fn a_value_does_not_open_in_another_context_or_without_its_key() {
        let mut keys = BTreeMap::new();
        let r = ring(&["k1"], "k1", &mut keys);
        let sealed = r.seal(b"hunter2", "acme/global/A");
        assert!(r.open(&sealed, "evil/global/A").is_none());
        let other = ring(&["k9"], "k9", &mut BTreeMap::new());
        assert!(other.open(&sealed, "acme/global/A").is_none());
    }

    #[test]
    fn bad_keys_are_refused() {
        let keys = BTreeMap::from([("k1".to_owned(), "c2hvcnQ=".to_owned())]);
        assert!(matches!(Keyring::new(&keys, "k1"), Err(KeyringError::BadKey(_))));
        let keys = BTreeMap::from([("k1".to_owned(), Keyring::generate_key())]);
        assert!(matches!(Keyring::new(&keys, "k2"), Err(KeyringError::UnknownPrimary(_))));
    }
}
