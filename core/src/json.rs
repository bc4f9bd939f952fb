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
    let message = plain(&err.to_string());
    let code = match err.classify() {
        serde_json::error::Category::Data if message.starts_with("unknown field") => "unknown_field",
        serde_json::error::Category::Data if message.starts_with("missing field") => "missing_field",
        serde_json::error::Category::Data => "invalid_field",
        _ => "invalid_json",
    };
    JsonError { code, message }
}

/// Parses a JSON object body into `T`, classifying any error and naming the field it is in
/// (`tasks[1].cpu: …`). Anything but an object is refused: serde would otherwise accept a struct
/// written as an array of its fields in order. A number without a fraction is a whole number
/// whichever way it is written (`306.0` is `306`), as JSON Schema's `integer` says.
pub fn from_slice<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, JsonError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(JsonError { code: "invalid_json", message: "the body must be a JSON object".into() });
    }
    from_value(serde_json::from_slice(body).map_err(|e| classify(&e))?)
}

/// Reads a JSON object already parsed into `T`, as [`from_slice`] does.
pub fn from_value<T: serde::de::DeserializeOwned>(mut value: serde_json::Value) -> Result<T, JsonError> {
    if !value.is_object() {
        return Err(JsonError { code: "invalid_json", message: "the body must be a JSON object".into() });
    }
    whole_numbers(&mut value);
    if let Some(path) = nul_in(&value, String::new()) {
        let at = if path.is_empty() { "the body".to_owned() } else { path };
        return Err(JsonError {
            code: "invalid_field",
            message: format!("{at}: holds a NUL character (U+0000), which no text may hold"),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = classify(e.inner());
        let message = if path == "." { inner.message } else { format!("{path}: {}", inner.message) };
        JsonError { code: inner.code, message }
    })
}

/// Where a string (or an object's key) holds NUL, which Postgres text cannot store: the
/// document's string schemas exclude it (`api::contract`), so it is refused for every field.
fn nul_in(value: &serde_json::Value, at: String) -> Option<String> {
    match value {
        serde_json::Value::String(text) if text.contains('\0') => Some(at),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| nul_in(v, format!("{at}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, v)| {
            let key_shown = shown(key);
            let at = if at.is_empty() { key_shown } else { format!("{at}.{key_shown}") };
            if key.contains('\0') { Some(at) } else { nul_in(v, at) }
        }),
        _ => None,
    }
}

/// A key as a path shows it: control characters (a NUL above all) written as escapes
/// (`\u{0}`), so that the message naming the key holds none itself.
fn shown(key: &str) -> String {
    key.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// Writes every number without a fraction as an integer.
fn whole_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 {
                if f >= 0.0 && f <= u64::MAX as f64 {
                    *value = serde_json::Value::from(f as u64);
                } else if f < 0.0 && f >= i64::MIN as f64 {
                    *value = serde_json::Value::from(f as i64);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// serde's message in plain words: the Rust type it expected becomes what a client would write,
/// and the position (meaningless once the field is named) is left out.
fn plain(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    };
    let Some((head, expected)) = message.rsplit_once(", expected ") else { return message.to_owned() };
    let wanted = match expected {
        "u8" => "a whole number from 0 to 255".to_owned(),
        "u16" => "a whole number from 0 to 65535".to_owned(),
        "u32" => "a whole number from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a whole number from 0".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" | "a string" | "a sequence" | "a map" => {
            expected.replace("a sequence", "a list").replace("a map", "an object")
        }
        e if e.starts_with("struct ") || e.starts_with("a map") => "an object".to_owned(),
        e if e.starts_with("a sequence") => "a list".to_owned(),
        e if e.starts_with("a string") => "a string".to_owned(),
        e if e.starts_with("a boolean") => "true or false".to_owned(),
        e if e.starts_with("enum ") => "one of the documented values".to_owned(),
        e if e.starts_with("i64") || e.starts_with("u32") => "a whole number".to_owned(),
        other => other.to_owned(),
    };
    let head = head.replace("floating point", "the number").replace("integer", "the number");
    format!("{head}; expected {wanted}")
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

    #[test]
    fn whole_numbers_may_be_written_with_a_fraction_of_zero() {
        assert_eq!(from_slice::<Body>(br#"{"id":"x","count":306.0}"#).unwrap().count, 306);
        let err = from_slice::<Body>(br#"{"id":"x","count":1.5}"#).unwrap_err();
        assert_eq!(err.code, "invalid_field");
        assert_eq!(err.message, "count: invalid type: the number `1.5`; expected a whole number from 0 to 4294967295");
    }

    #[test]
    fn no_text_may_hold_nul() {
        let err = from_slice::<Body>(b"{\"id\":\"a\\u0000b\",\"count\":1}").unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            ("invalid_field", "id: holds a NUL character (U+0000), which no text may hold")
        );
        let err = from_slice::<serde_json::Value>(b"{\"a\":[\"x\",{\"b\":\"\\u0000\"}]}").unwrap_err();
        assert!(err.message.starts_with("a[1].b: "), "{err}");
        // A key holding the NUL is named with the NUL escaped: the message holds none itself.
        let err = from_slice::<serde_json::Value>(b"{\"env\":{\"K\\u0000\":\"v\"}}").unwrap_err();
        assert_eq!(err.message, "env.K\\u{0}: holds a NUL character (U+0000), which no text may hold");
        assert!(!err.message.contains('\0'));
    }

    #[test]
    fn messages_name_the_field_in_plain_words() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            tasks: Vec<Body>,
        }
        let err = from_slice::<Outer>(br#"{"tasks":[{"id":"x","count":1},{"id":"y","count":-1}]}"#).unwrap_err();
        assert_eq!(
            err.message,
            "tasks[1].count: invalid value: the number `-1`; expected a whole number from 0 to 4294967295"
        );
        let err = from_slice::<Outer>(br#"{"tasks":null}"#).unwrap_err();
        assert_eq!(err.message, "tasks: invalid type: null; expected a list");
        let err = from_slice::<Outer>(br#"{"tasks":[null]}"#).unwrap_err();
        assert_eq!(err.message, "tasks[0]: invalid type: null; expected an object");
        let message = &err.message;
        assert!(!message.contains("struct") && !message.contains("u32") && !message.contains("line"), "{message}");
    }
}
