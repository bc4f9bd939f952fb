//! Event ids as tenants see them: an event's place in the one sequence of every tenant's events
//! (`events.id`), encrypted with a key of the tenant's own.
//!
//! The sequence is global, so showing it would let a tenant count everyone's events: the gap
//! between two of its own ids is the number of events every other tenant wrote in between. So an
//! id is one AES-256 block, `seq` (8 bytes, big-endian) followed by 8 zero bytes, encrypted with
//! the tenant's key `HMAC-SHA256(master, "gofer event ids\0" ‖ tenant)`, written as 22 base64url
//! characters. Under a secret key, AES is a pseudo-random permutation: a tenant's ids look random
//! and independent of one another, whatever lies between them. Decrypting gives the `seq` back, so
//! a resume (`after`, `cursor`, `Last-Event-ID`) costs no lookup, and the 8 zero bytes
//! authenticate it: a made-up id, or one of another tenant (encrypted under another key), decrypts
//! to anything but zeros (one chance in 2^64) and is refused.
//!
//! Why not a sequence per tenant: numbering events per tenant as they are written takes a row lock
//! of the tenant's counter in every transaction that writes an event, which serialises a tenant's
//! whole engine throughput on one row, and a number assigned at commit (not at insert) needs a
//! second writer. Encryption adds no write, no column and no lock, keeps stream order and its
//! resume rule exactly as they are (`engine::events`), and costs a microsecond per event served.
//!
//! The master key is 32 random bytes kept in the database (`engine::events::id_key`): every
//! replica reads the same one without configuration, and it protects nothing the database does
//! not already hold. Changing it makes every id handed out so far unknown (400): clients start
//! again from the history.

use aes_gcm::aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes_gcm::aes::{Aes256, Block};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gofer_core::TenantId;
use gofer_core::id::EventId;
use gofer_core::model::Event;
use gofer_engine::events::StoredEvent;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Domain separation of the per-tenant keys, so the master key could serve nothing else by accident.
const CONTEXT: &[u8] = b"gofer event ids\0";

/// The master key of the event ids; hands out each tenant's [`TenantEventIds`].
#[derive(Clone)]
pub struct EventIds {
    master: [u8; 32],
}

impl std::fmt::Debug for EventIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventIds([REDACTED])")
    }
}

impl EventIds {
    /// Ids under the master key `master`.
    pub fn new(master: [u8; 32]) -> Self {
        Self { master }
    }

    /// The master key stored in the database, created on the first start.
    pub async fn load(pool: &PgPool) -> anyhow::Result<Self> {
        let candidate = STANDARD.encode(rand::random::<[u8; 32]>());
        let stored = gofer_engine::events::id_key(pool, &candidate).await?;
        let master = STANDARD
            .decode(stored.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| anyhow::anyhow!("the metadata row event_id_key is not base64 of 32 bytes"))?;
        Ok(Self::new(master))
    }

    /// The ids of one tenant's events.
    pub fn tenant(&self, tenant: &TenantId) -> TenantEventIds {
        let key = hmac_sha256(&self.master, &[CONTEXT, tenant.as_str().as_bytes()]);
        TenantEventIds { cipher: Aes256::new(&key.into()) }
    }
}

/// One tenant's event ids: made from, and read back into, `events.id`.
#[derive(Clone)]
pub struct TenantEventIds {
    cipher: Aes256,
}

impl TenantEventIds {
    /// The id the tenant sees for the event `seq`.
    pub fn id(&self, seq: i64) -> EventId {
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&seq.to_be_bytes());
        let mut block: Block = block.into();
        self.cipher.encrypt_block(&mut block);
        EventId::parse(&URL_SAFE_NO_PAD.encode(block)).expect("16 bytes are 22 base64url characters")
    }

    /// The `seq` of an id made for this tenant; `None` for anything else (made up, damaged, or
    /// made for another tenant).
    pub fn seq(&self, id: &EventId) -> Option<i64> {
        let bytes = URL_SAFE_NO_PAD.decode(id.as_str()).ok()?;
        let mut block: Block = <[u8; 16]>::try_from(bytes).ok()?.into();
        self.cipher.decrypt_block(&mut block);
        let (seq, check) = block.split_at(8);
        if check.iter().any(|b| *b != 0) {
            return None;
        }
        let seq = i64::from_be_bytes(seq.try_into().ok()?);
        (seq >= 1).then_some(seq)
    }

    /// The stored event as the tenant sees it.
    pub fn event(&self, stored: StoredEvent) -> Event {
        let id = self.id(stored.seq);
        stored.into_event(id)
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`, for keys of at most one block (64 bytes).
/// Written out because the workspace's `sha2` (0.10) and the `hmac` in the lock file (0.13, on
/// `digest` 0.11) do not fit together; checked against RFC 4231's vectors below.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    assert!(key.len() <= 64, "keys longer than a block are hashed first; none is here");
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(master: u8, tenant: &str) -> TenantEventIds {
        EventIds::new([master; 32]).tenant(&TenantId::parse(tenant).unwrap())
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        let case1 = hmac_sha256(&[0x0b; 20], &[b"Hi There"]);
        assert_eq!(hex::encode(case1), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        let case2 = hmac_sha256(b"Jefe", &[b"what do ya ", b"want for nothing?"]);
        assert_eq!(hex::encode(case2), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn ids_round_trip_for_their_tenant() {
        let acme = ids(7, "acme");
        for seq in [1, 2, 3, 255, 256, 1 << 32, i64::MAX] {
            let id = acme.id(seq);
            assert_eq!(id.as_str().len(), EventId::LEN);
            assert_eq!(acme.seq(&id), Some(seq), "{seq}");
            assert_eq!(acme.id(seq), id, "the same event always has the same id");
        }
    }

    #[test]
    fn consecutive_ids_of_two_tenants_reveal_no_order_or_gap() {
        let (acme, umbrella) = (ids(7, "acme"), ids(7, "umbrella"));
        // Acme's events are 1000, 1001 and then 1500 (Umbrella wrote the 498 between): nothing in
        // Acme's ids tells the step of one from the step of 499.
        let acme_ids: Vec<EventId> = [1000, 1001, 1500].into_iter().map(|s| acme.id(s)).collect();
        let umbrella_ids: Vec<EventId> = (1002..1500).map(|s| umbrella.id(s)).collect();
        // Neither order nor closeness survives: adjacent numbers have unrelated ids (they differ in
        // about half of their 128 bits, as random blocks do).
        let bits = |a: &EventId, b: &EventId| -> u32 {
            let (a, b) = (URL_SAFE_NO_PAD.decode(a.as_str()).unwrap(), URL_SAFE_NO_PAD.decode(b.as_str()).unwrap());
            a.iter().zip(&b).map(|(x, y)| (x ^ y).count_ones()).sum()
        };
        let near: Vec<u32> = (1..2000).map(|s| bits(&acme.id(s), &acme.id(s + 1))).collect();
        let mean = f64::from(near.iter().sum::<u32>()) / near.len() as f64;
        assert!((60.0..68.0).contains(&mean), "adjacent ids differ in {mean} bits on average");
        assert!(near.iter().all(|b| *b > 30), "no two adjacent ids are close: {near:?}");
        // Ids in id order are in no particular order: over many numbers, half the adjacent pairs
        // compare one way.
        let rising = (1..2000).filter(|s| acme.id(*s).as_str() < acme.id(s + 1).as_str()).count();
        assert!((850..1150).contains(&rising), "{rising} of 1999 adjacent pairs rise");
        // The same number gets unrelated ids in two tenants, and ids never collide across them.
        assert!(bits(&acme.id(1001), &umbrella.id(1001)) > 30);
        assert!(umbrella_ids.iter().all(|u| !acme_ids.contains(u)));
        assert!(bits(&acme_ids[0], &acme_ids[1]) > 30 && bits(&acme_ids[1], &acme_ids[2]) > 30);
    }

    #[test]
    fn made_up_and_other_tenants_ids_are_refused() {
        let (acme, umbrella) = (ids(7, "acme"), ids(7, "umbrella"));
        let theirs = umbrella.id(42);
        assert_eq!(acme.seq(&theirs), None, "another tenant's id");
        assert_eq!(ids(8, "acme").seq(&acme.id(42)), None, "an id under another master key");
        let mine = acme.id(42);
        // Every single-character change of a real id is refused.
        for (i, c) in mine.as_str().char_indices() {
            for other in ['A', 'f', '0', '-'] {
                if other == c {
                    continue;
                }
                let mut forged = mine.as_str().to_owned();
                forged.replace_range(i..=i, &other.to_string());
                if let Ok(forged) = EventId::parse(&forged) {
                    assert_eq!(acme.seq(&forged), None, "{forged}");
                }
            }
        }
        // Zeros, a non-canonical encoding (trailing bits set), the base64 of "1234567890123456".
        for made_up in ["AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAB", "MTIzNDU2Nzg5MDEyMzQ1Ng"] {
            assert_eq!(acme.seq(&EventId::parse(made_up).unwrap()), None, "{made_up}");
        }
    }

    #[test]
    fn the_master_key_never_prints() {
        assert_eq!(format!("{:?}", EventIds::new([9; 32])), "EventIds([REDACTED])");
    }
}
