//! IP blocks: client addresses refused with 403 `ip_blocked` until the block ends, kept in memory
//! (reloaded from Postgres when any replica changes them). Blocks exist to stop anonymous abuse,
//! and many people can share one address (an office NAT, a carrier's NAT, a CI provider's
//! egress): so a block of scope `anonymous` (every automatic one) refuses only callers that are
//! not a paying tenant's or an operator's verified token ([`refuses`]); only an operator's block of
//! scope `all` refuses everyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::Duration;

use gofer_core::model::BlockScope;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::limits::client_key;

/// Who is asking, as far as blocks and the per-address limits are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No token.
    Anonymous,
    /// A token that did not verify (made up, revoked, expired), or was not looked up.
    Unverified,
    /// A trial tenant's token.
    Trial,
    /// A paying tenant's token, an operator's, or a run token: verified, and accountable on its
    /// own, so an anonymous-scope block of its address does not refuse it.
    Verified,
}

/// An active block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveBlock {
    /// When it ends.
    pub until: OffsetDateTime,
    /// What it refuses.
    pub scope: BlockScope,
    /// Why (`trial_signups`, `rate_limits`, or an operator's text).
    pub reason: String,
}

/// Whether `block` refuses `caller`. The routes that list and lift blocks are never refused:
/// they need an operator token anyway, and an operator must be able to undo a block from
/// anywhere.
pub fn refuses(block: &ActiveBlock, caller: Caller, blocks_route: bool) -> bool {
    if blocks_route {
        return false;
    }
    match block.scope {
        BlockScope::All => true,
        BlockScope::Anonymous => caller != Caller::Verified,
    }
}

/// The 403 `ip_blocked` answer: which block, until when, and whether a verified token passes.
pub fn ip_blocked(block: &ActiveBlock) -> ApiError {
    let until = block.until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let who = match block.scope {
        BlockScope::Anonymous => {
            "; a request with a paying tenant's or an operator's token passes (anonymous requests, trial sign-ups, \
             trial tokens and failed authentications do not)"
        }
        BlockScope::All => " for every request",
    };
    ApiError::Forbidden {
        code: "ip_blocked",
        detail: format!(
            "this client address is blocked ({} block, reason {}) until {until}{who}",
            block.scope.as_str(),
            block.reason
        ),
    }
}

/// The client addresses blocked right now, in memory: checking a request costs one map lookup.
/// Reloaded from Postgres when a replica announces a change (NOTIFY) and periodically; also
/// counts each address's rate-limited answers, to block one that keeps hitting the limits.
pub struct IpBlocks {
    blocked: RwLock<HashMap<IpAddr, ActiveBlock>>,
    strikes: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl IpBlocks {
    /// `strikes_per_minute` rate-limited answers per address are tolerated; 0 never blocks.
    pub fn new(strikes_per_minute: u32) -> Self {
        Self {
            blocked: RwLock::default(),
            strikes: NonZeroU32::new(strikes_per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
        }
    }

    /// The client's block, if it is blocked.
    pub fn block(&self, ip: IpAddr) -> Option<ActiveBlock> {
        let block = self.blocked.read().ok()?.get(&client_key(ip)).cloned()?;
        (block.until > OffsetDateTime::now_utc()).then_some(block)
    }

    /// Replaces the blocks with the active ones from the database.
    pub fn replace(&self, active: impl IntoIterator<Item = gofer_core::model::IpBlock>) {
        let map: HashMap<IpAddr, ActiveBlock> = active
            .into_iter()
            .filter_map(|b| {
                let ip: IpAddr = b.address.parse().ok()?;
                Some((client_key(ip), ActiveBlock { until: b.expires, scope: b.scope, reason: b.reason }))
            })
            .collect();
        if let Ok(mut blocked) = self.blocked.write() {
            *blocked = map;
        }
    }

    /// Blocks a client here at once (the database and other replicas follow), as the database
    /// does: extending an existing block, and widening its scope.
    pub fn insert(&self, ip: IpAddr, block: ActiveBlock) {
        if let Ok(mut blocked) = self.blocked.write() {
            let entry = blocked.entry(client_key(ip)).or_insert_with(|| block.clone());
            entry.until = entry.until.max(block.until);
            if block.scope == BlockScope::All {
                entry.scope = BlockScope::All;
            }
            entry.reason = block.reason;
        }
    }

    /// Counts a rate-limited answer; true when the client has now had too many and must be blocked.
    pub fn strike(&self, ip: IpAddr) -> bool {
        self.strikes.as_ref().is_some_and(|s| s.check_key(&client_key(ip)).is_err())
    }

    /// Forgets idle strike counters and ended blocks.
    pub fn sweep(&self) {
        if let Some(strikes) = &self.strikes {
            strikes.retain_recent();
            strikes.shrink_to_fit();
        }
        let now = OffsetDateTime::now_utc();
        if let Ok(mut blocked) = self.blocked.write() {
            blocked.retain(|_, block| block.until > now);
        }
    }

    /// Blocks `ip` (scope `anonymous`) here at once and in the database (which tells the other
    /// replicas) before the answer goes out, so an operator listing blocks right after sees it. Rare:
    /// only abusers pay it. Answers the block.
    pub(crate) async fn block_client(
        &self,
        pool: &sqlx::PgPool,
        ip: IpAddr,
        reason: &'static str,
        for_s: u64,
    ) -> ActiveBlock {
        let until = OffsetDateTime::now_utc() + Duration::from_secs(for_s);
        let block = ActiveBlock { until, scope: BlockScope::Anonymous, reason: reason.to_owned() };
        self.insert(ip, block.clone());
        let address = client_key(ip).to_string();
        tracing::warn!(client = %address, reason, block_s = for_s, "blocking a client address");
        let duration = time::Duration::seconds(i64::try_from(for_s).unwrap_or(i64::MAX));
        if let Err(e) = gofer_billing::ip_blocks::block(pool, &address, reason, duration, BlockScope::Anonymous).await {
            tracing::error!(error = %e, client = %address, "recording an IP block failed");
        }
        self.block(ip).unwrap_or(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(scope: BlockScope) -> ActiveBlock {
        ActiveBlock { until: OffsetDateTime::now_utc() + Duration::from_secs(60), scope, reason: "test".into() }
    }

    #[test]
    fn an_anonymous_block_refuses_all_but_verified_tokens_and_an_all_block_everyone() {
        let anonymous = block(BlockScope::Anonymous);
        for caller in [Caller::Anonymous, Caller::Unverified, Caller::Trial] {
            assert!(refuses(&anonymous, caller, false), "{caller:?}");
        }
        assert!(!refuses(&anonymous, Caller::Verified, false));
        let all = block(BlockScope::All);
        for caller in [Caller::Anonymous, Caller::Unverified, Caller::Trial, Caller::Verified] {
            assert!(refuses(&all, caller, false), "{caller:?}");
            assert!(!refuses(&all, caller, true), "the blocks' own routes: {caller:?}");
        }
    }

    #[test]
    fn blocks_are_kept_per_client_key_extended_and_only_widened() {
        let blocks = IpBlocks::new(0);
        let ip: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        blocks.insert(ip, block(BlockScope::All));
        blocks.insert("192.0.2.1".parse().unwrap(), block(BlockScope::Anonymous));
        let active = blocks.block("192.0.2.1".parse().unwrap()).expect("blocked");
        assert_eq!(active.scope, BlockScope::All, "an automatic block never narrows an operator's");
        assert!(blocks.block("192.0.2.2".parse().unwrap()).is_none());
    }

    #[test]
    fn the_refusal_names_the_block_and_whether_a_token_passes() {
        let detail = ip_blocked(&block(BlockScope::Anonymous)).to_string();
        assert!(detail.contains("anonymous block") && detail.contains("paying tenant's"), "{detail}");
        let detail = ip_blocked(&block(BlockScope::All)).to_string();
        assert!(detail.contains("all block") && detail.contains("every request"), "{detail}");
    }
}
