//! Run tokens: short-lived JWTs (HS256, `kid` names the key so keys can rotate) minted for a run's
//! tasks that ask for `inject_api_token`. Nothing of them is stored; the API checks on every use
//! that the run is still live.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use gofer_core::{NamespaceId, PipelineId, RunId, TenantId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use crate::token::RunScope;
use crate::token::SECRET_PREFIX;

const ISSUER: &str = "gofer";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    tenant: String,
    namespace: String,
    pipeline: String,
    run: i64,
    iat: i64,
    exp: i64,
}

/// Why the keys could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RunTokenError {
    /// A key is not base64 of at least 32 bytes, or the active key is missing.
    #[error("run token keys: {0}")]
    BadKeys(String),
    /// Signing failed.
    #[error("signing a run token failed: {0}")]
    Signing(String),
}

/// The signing keys: every key verifies, the active one signs.
pub struct RunTokenKeys {
    keys: HashMap<String, (EncodingKey, DecodingKey)>,
    active: String,
}

impl std::fmt::Debug for RunTokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunTokenKeys(active {}, {} keys)", self.active, self.keys.len())
    }
}

impl RunTokenKeys {
    /// Keys by id (base64 secrets of at least 32 bytes) and the id of the one that signs.
    pub fn new(keys: &BTreeMap<String, String>, active: &str) -> Result<Self, RunTokenError> {
        let mut decoded = HashMap::new();
        for (kid, secret) in keys {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(secret)
                .map_err(|_| RunTokenError::BadKeys(format!("key {kid:?} is not base64")))?;
            if bytes.len() < 32 {
                return Err(RunTokenError::BadKeys(format!("key {kid:?} is shorter than 32 bytes")));
            }
            decoded.insert(kid.clone(), (EncodingKey::from_secret(&bytes), DecodingKey::from_secret(&bytes)));
        }
        if !decoded.contains_key(active) {
            return Err(RunTokenError::BadKeys(format!("the active key {active:?} is not among the keys")));
        }
        Ok(Self { keys: decoded, active: active.to_owned() })
    }

    /// A fresh random key, base64, for configs and first starts.
    pub fn generate_secret() -> String {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Mints a token for `scope` valid until `expires`.
    pub fn mint(&self, scope: &RunScope, expires: OffsetDateTime) -> Result<String, RunTokenError> {
        let (encoding, _) = &self.keys[&self.active];
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.active.clone());
        let claims = Claims {
            iss: ISSUER.into(),
            sub: format!("run:{}/{}/{}/{}", scope.tenant, scope.namespace, scope.pipeline, scope.run),
            tenant: scope.tenant.to_string(),
            namespace: scope.namespace.to_string(),
            pipeline: scope.pipeline.to_string(),
            run: scope.run.get(),
            iat: OffsetDateTime::now_utc().unix_timestamp(),
            exp: expires.unix_timestamp(),
        };
        jsonwebtoken::encode(&header, &claims, encoding).map_err(|e| RunTokenError::Signing(e.to_string()))
    }

    /// The key that signed `token` (HS256, a known `kid`) and the checks every signed thing of
    /// the service gets: this issuer, unexpired, no leeway.
    fn validation(&self, token: &str) -> Option<(&DecodingKey, Validation)> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::HS256 {
            return None;
        }
        let (_, decoding) = self.keys.get(header.kid.as_deref()?)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        Some((decoding, validation))
    }

    /// Checks a presented token: known key, HS256, issuer, not expired. `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<RunScope> {
        let (decoding, validation) = self.validation(token)?;
        let claims = jsonwebtoken::decode::<Claims>(token, decoding, &validation).ok()?.claims;
        Some(RunScope {
            tenant: claims.tenant.parse().ok()?,
            namespace: claims.namespace.parse().ok()?,
            pipeline: claims.pipeline.parse().ok()?,
            run: RunId::from_i64(claims.run),
        })
    }
}

/// The envelope of an assertion: the service's claims around the caller's.
#[derive(Serialize, Deserialize)]
struct Assertion<T> {
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    #[serde(flatten)]
    claims: T,
}

impl RunTokenKeys {
    /// Signs `claims` as a short-lived assertion for `audience` (what it is for, e.g.
    /// `gofer-trial-challenge`), valid until `expires`: something the service hands out and checks
    /// later itself, on any replica. Assertions never verify as run tokens (they carry an
    /// audience and none of a run token's claims), nor as assertions for another audience.
    pub fn sign_assertion<T: Serialize>(
        &self,
        audience: &str,
        claims: T,
        expires: OffsetDateTime,
    ) -> Result<String, RunTokenError> {
        let (encoding, _) = &self.keys[&self.active];
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.active.clone());
        let assertion = Assertion {
            iss: ISSUER.into(),
            aud: audience.into(),
            iat: OffsetDateTime::now_utc().unix_timestamp(),
            exp: expires.unix_timestamp(),
            claims,
        };
        jsonwebtoken::encode(&header, &assertion, encoding).map_err(|e| RunTokenError::Signing(e.to_string()))
    }

    /// Checks an assertion for `audience`: known key, HS256, issuer, audience, not expired.
    /// Answers its claims and when it expires; `None` for anything else.
    pub fn verify_assertion<T: serde::de::DeserializeOwned>(
        &self,
        audience: &str,
        token: &str,
    ) -> Option<(T, OffsetDateTime)> {
        let (decoding, mut validation) = self.validation(token)?;
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        let assertion = jsonwebtoken::decode::<Assertion<T>>(token, decoding, &validation).ok()?.claims;
        Some((assertion.claims, OffsetDateTime::from_unix_timestamp(assertion.exp).ok()?))
    }
}

impl gofer_core::tokens::RunTokenMinter for RunTokenKeys {
    fn mint(
        &self,
        tenant: &TenantId,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
        run: RunId,
        expires: OffsetDateTime,
    ) -> Result<String, String> {
        let scope = RunScope { tenant: tenant.clone(), namespace: namespace.clone(), pipeline: pipeline.clone(), run };
        RunTokenKeys::mint(self, &scope, expires).map_err(|e| e.to_string())
    }
}

/// Whether a presented bearer looks like a JWT rather than an API token secret.
pub fn looks_like_jwt(token: &str) -> bool {
    !token.starts_with(SECRET_PREFIX) && token.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> RunScope {
        RunScope {
            tenant: "acme".parse().unwrap(),
            namespace: "builds".parse().unwrap(),
            pipeline: "hello".parse().unwrap(),
            run: RunId::from_i64(7),
        }
    }

    fn keys(kid: &str, secret: &str) -> RunTokenKeys {
        RunTokenKeys::new(&BTreeMap::from([(kid.to_owned(), secret.to_owned())]), kid).unwrap()
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let k = keys("k1", &RunTokenKeys::generate_secret());
        let token = k.mint(&scope(), OffsetDateTime::now_utc() + time::Duration::minutes(5)).unwrap();
        assert!(looks_like_jwt(&token));
        assert_eq!(k.verify(&token), Some(scope()));
        let expired = k.mint(&scope(), OffsetDateTime::now_utc() - time::Duration::seconds(5)).unwrap();
        assert_eq!(k.verify(&expired), None);
    }

    #[test]
    fn tokens_of_other_keys_or_tampered_tokens_fail_and_rotation_keeps_old_keys_verifying() {
        let old_secret = RunTokenKeys::generate_secret();
        let old = keys("k1", &old_secret);
        let token = old.mint(&scope(), OffsetDateTime::now_utc() + time::Duration::minutes(5)).unwrap();
        let other = keys("k1", &RunTokenKeys::generate_secret());
        assert_eq!(other.verify(&token), None, "another key with the same id");
        let rotated = RunTokenKeys::new(
            &BTreeMap::from([("k1".to_owned(), old_secret), ("k2".to_owned(), RunTokenKeys::generate_secret())]),
            "k2",
        )
        .unwrap();
        assert_eq!(rotated.verify(&token), Some(scope()), "old tokens verify after rotation");
        let mut tampered = token.clone();
        tampered.replace_range(tampered.len() - 3.., "AAA");
        assert_eq!(old.verify(&tampered), None);
        assert!(RunTokenKeys::new(&BTreeMap::from([("k".to_owned(), "c2hvcnQ=".to_owned())]), "k").is_err());
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        said: String,
    }

    #[test]
    fn assertions_verify_only_for_their_audience_and_never_as_run_tokens() {
        let k = keys("k1", &RunTokenKeys::generate_secret());
        let soon = OffsetDateTime::now_utc() + time::Duration::minutes(5);
        let assertion = k.sign_assertion("gofer-test", Note { said: "hi".into() }, soon).unwrap();
        let (note, expires) = k.verify_assertion::<Note>("gofer-test", &assertion).expect("verifies");
        assert_eq!((note.said.as_str(), expires.unix_timestamp()), ("hi", soon.unix_timestamp()));
        assert!(k.verify_assertion::<Note>("gofer-other", &assertion).is_none(), "another audience");
        assert_eq!(k.verify(&assertion), None, "an assertion is no run token");
        let run_token = k.mint(&scope(), soon).unwrap();
        assert!(k.verify_assertion::<serde_json::Value>("gofer-test", &run_token).is_none(), "nor the reverse");
        let expired = k.sign_assertion("gofer-test", Note { said: "old".into() }, OffsetDateTime::now_utc()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(k.verify_assertion::<Note>("gofer-test", &expired).is_none(), "expired");
        let other = keys("k1", &RunTokenKeys::generate_secret());
        assert!(other.verify_assertion::<Note>("gofer-test", &assertion).is_none(), "another key");
    }
}
