//! Turns serde_json errors into stable codes, so every body parser names the problem the same way.

/// A JSON body that could not be read, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JsonError {
    /// `unknown_field`, `missing_field`, `invalid_field` or `invalid_json`.
    pub code: &'static str,
    /// serde's message, which names the field and the position.
    pub message: String,
}

/// Classifies a serde_json error: an unknown or missing field and a wrong value are told apart from broken syntax.
pub fn classify(err: &serde_json::Error) -> JsonError {
    let message = err.to_string();
    let code = match err.classify() {
        serde_json::error::Category::Data if message.starts_with("unknown field") => "unknown_field",
        serde_json::error::Category::Data if message.starts_with("missing field") => "missing_field",
        serde_json::error::Category::Data => "invalid_field",
        _ => "invalid_json",
    };
    JsonError { code, message }
}

/// Parses a JSON object body into `T`, classifying any error. Anything but an object is refused:
/// serde would otherwise accept a struct written as an array of its fields in order.
pub fn from_slice<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, JsonError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(JsonError { code: "invalid_json", message: "the body must be a JSON object".into() });
    }
    serde_json::from_slice(body).map_err(|e| classify(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        id: String,
        count: u32,
    }

    #[test]
    fn codes() {
        assert_eq!(from_slice::<Body>(br#"{"id":"x","count":1,"extra":1}"#).unwrap_err().code, "unknown_field");
        assert!(from_slice::<Body>(br#"{"id":"x","count":1,"extra":1}"#).unwrap_err().message.contains("extra"));
        assert_eq!(from_slice::<Body>(br#"{"id":"x"}"#).unwrap_err().code, "missing_field");
        assert_eq!(from_slice::<Body>(br#"{"id":"x","count":-1}"#).unwrap_err().code, "invalid_field");
        assert_eq!(from_slice::<Body>(br#"{"id":"x","#).unwrap_err().code, "invalid_json");
        assert_eq!(from_slice::<Body>(b"").unwrap_err().code, "invalid_json");
        // A struct as an array of its fields is not the documented body.
        assert_eq!(from_slice::<Body>(br#"["x", 1]"#).unwrap_err().code, "invalid_json");
        assert_eq!(from_slice::<Body>(b" \n[]").unwrap_err().code, "invalid_json");
    }
}
