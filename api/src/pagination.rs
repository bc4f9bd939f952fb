//! `?limit=&cursor=` for every list: keyset pagination with opaque cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
    /// The `next_cursor` of the previous page.
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

fn invalid_cursor() -> ApiError {
    ApiError::InvalidParameter { code: "invalid_cursor", detail: "cursor is not one this list handed out".into() }
}

/// The cursor is the last key of a page, as base64url JSON: opaque to clients, and decoded back
/// through the key's own validating deserializer.
fn decode_cursor<K: DeserializeOwned>(cursor: &str) -> Result<K, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid_cursor())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid_cursor())
}

fn encode_cursor<K: serde::Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
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
        assert_eq!(query(None, Some("!!")).parse::<NamespaceId>().unwrap_err().code(), "invalid_cursor");
        let bad_id = URL_SAFE_NO_PAD.encode(b"\"Not Valid\"");
        assert_eq!(query(None, Some(&bad_id)).parse::<NamespaceId>().unwrap_err().code(), "invalid_cursor");
    }
}
