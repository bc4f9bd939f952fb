//! `?limit=&cursor=` for every list: keyset pagination whose cursor is the key of the last item
//! of the previous page, written as text (an id, a number, a key), as Stripe's `starting_after`.
//!
//! A plain key rather than an opaque token: a client can resume from an item it knows, the
//! document can say exactly which cursors are valid (the key's own schema, see `contract`), and
//! a key that no longer exists is still a place in the order, so every well-formed cursor is
//! answered (issue 29). The keys are ones the caller can already read, so nothing leaks; the one
//! list whose keys are secret places (events) encrypts them in its ids instead (`event_ids`).

use gofer_core::model::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Page, PageRequest};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::error::ApiError;

/// Query parameters of every list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Items per page, 1 to 500 (default 50).
    limit: Option<String>,
    /// Where the page starts: after this key (the `next_cursor` of the previous page, which is
    /// the key of that page's last item). Any well-formed key is accepted, also one that is gone.
    cursor: Option<String>,
}

impl PageQuery {
    /// The parameters as read by a route with a query of its own.
    pub(crate) fn from_parts(limit: Option<String>, cursor: Option<String>) -> Self {
        Self { limit, cursor }
    }

    /// Validates the parameters into a page request whose key is `K`.
    pub fn parse<K: DeserializeOwned>(&self) -> Result<PageRequest<K>, ApiError> {
        let limit = match &self.limit {
            None => DEFAULT_PAGE_LIMIT,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::InvalidParameter {
                        code: "invalid_limit",
                        detail: format!("limit must be an integer from 1 to {MAX_PAGE_LIMIT}"),
                    });
                }
            },
        };
        let after = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(PageRequest { limit, after })
    }
}

/// A cursor read back through the key's own validating deserializer: as text (an id, a key), or
/// as a number (a run, a version: every numeric key counts from 1, in plain decimal).
fn decode_cursor<K: DeserializeOwned>(cursor: &str) -> Result<K, ApiError> {
    let as_number = || match serde_json::from_str::<u64>(cursor) {
        Ok(n) if n >= 1 => serde_json::from_value(n.into()).map_err(drop),
        _ => Err(()),
    };
    // NUL is in no key, and the database could not compare with it.
    let as_text = || match cursor.contains('\0') {
        true => Err(()),
        false => serde_json::from_value(serde_json::Value::String(cursor.to_owned())).map_err(drop),
    };
    as_text().or_else(|_| as_number()).map_err(|_| ApiError::InvalidParameter {
        code: "invalid_cursor",
        detail: "cursor: not a key of this list (give the next_cursor of the previous page)".into(),
    })
}

/// A key as its text: a string as it is, a number in decimal.
fn encode_cursor<K: serde::Serialize>(key: &K) -> String {
    match serde_json::to_value(key) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Builds the page answer from items and the next key.
pub fn page<T, K: serde::Serialize>((items, next): (Vec<T>, Option<K>)) -> Page<T> {
    Page { items, next_cursor: next.as_ref().map(encode_cursor) }
}

/// The JSON of a page whose items are already serialized: exactly what serializing
/// [`page`]'s answer gives, without serializing the items again.
pub fn page_json<'a, K: serde::Serialize>(items: impl IntoIterator<Item = &'a [u8]>, next: Option<K>) -> Vec<u8> {
    let mut json = b"{\"items\":[".to_vec();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(item);
    }
    json.extend_from_slice(b"],\"next_cursor\":");
    match next {
        Some(key) => {
            json.push(b'"');
            json.extend_from_slice(encode_cursor(&key).as_bytes());
            json.push(b'"');
        }
        None => json.extend_from_slice(b"null"),
    }
    json.push(b'}');
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use gofer_core::NamespaceId;

    fn query(limit: Option<&str>, cursor: Option<&str>) -> PageQuery {
        PageQuery { limit: limit.map(Into::into), cursor: cursor.map(Into::into) }
    }

    #[test]
    fn a_page_of_serialized_items_is_the_serialized_page() {
        let items = vec![serde_json::json!({"id": 3, "name": "a\"b"}), serde_json::json!({"id": 2})];
        let serialized: Vec<Vec<u8>> = items.iter().map(|i| serde_json::to_vec(i).unwrap()).collect();
        for next in [Some(2_i64), None] {
            let expected = serde_json::to_vec(&page((items.clone(), next))).unwrap();
            assert_eq!(page_json(serialized.iter().map(Vec::as_slice), next), expected);
        }
        let empty = serde_json::to_vec(&page((Vec::<i64>::new(), None::<i64>))).unwrap();
        assert_eq!(page_json(std::iter::empty(), None::<i64>), empty);
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(query(None, None).parse::<i64>().unwrap().limit, 50);
        assert_eq!(query(Some("500"), None).parse::<i64>().unwrap().limit, 500);
        for bad in ["0", "501", "-1", "ten"] {
            assert_eq!(query(Some(bad), None).parse::<i64>().unwrap_err().code(), "invalid_limit");
        }
    }

    #[test]
    fn cursors_round_trip_and_are_validated() {
        let ns = NamespaceId::parse("team-a").unwrap();
        let p = page((vec![1], Some(ns.clone())));
        let back = query(None, p.next_cursor.as_deref()).parse::<NamespaceId>().unwrap();
        assert_eq!(back.after, Some(ns));
        assert_eq!(p.next_cursor.as_deref(), Some("team-a"), "a key as itself");
        assert_eq!(query(None, Some("Not Valid")).parse::<NamespaceId>().unwrap_err().code(), "invalid_cursor");
        let run = page((vec![1], Some(gofer_core::RunId::parse("42").unwrap())));
        assert_eq!(run.next_cursor.as_deref(), Some("42"), "a number in decimal");
        assert_eq!(
            query(None, Some("42")).parse::<gofer_core::RunId>().unwrap().after,
            gofer_core::RunId::parse("42").ok()
        );
        for bad in ["0", "-1", "4x", ""] {
            let parsed = query(None, Some(bad)).parse::<gofer_core::RunId>();
            assert!(parsed.is_err(), "{bad}: {parsed:?}");
        }
        assert_eq!(query(None, Some("0042")).parse::<String>().unwrap().after.as_deref(), Some("0042"));
    }
}
