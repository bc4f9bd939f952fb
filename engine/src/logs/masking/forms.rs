//! The encoded forms of a secret value that the masker looks for: base64 (standard and URL-safe,
//! at the three alignments), hex (lower and upper case) and percent-encoding.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// The encoded forms of a value.
pub(super) type Encoder = fn(&[u8]) -> Vec<Vec<u8>>;

/// Every encoder, in the order their forms are kept under the pattern caps.
pub(super) const ENCODERS: [Encoder; 3] = [base64, hex, percent];

/// Base64 forms of `value`, standard and URL-safe, as it appears when the encoded text holds
/// 0, 1 or 2 bytes before it. For each alignment: the characters that depend on the value's bytes
/// only (whatever surrounds it), and the unpadded encoding up to the end (the value ends the
/// encoded text), which is one character longer when the value's bits do not fill it.
pub(super) fn base64(value: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = Vec::with_capacity(12);
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for before in 0..3usize {
            let mut data = vec![0u8; before];
            data.extend_from_slice(value);
            let encoded = engine.encode(&data).into_bytes();
            // Character `j` holds bits `6j..6j+6`: the first that starts in the value's bytes,
            // and the last that ends in them.
            let first = [0, 2, 3][before];
            let full = data.len() * 8 / 6;
            if full > first {
                forms.push(encoded[first..full].to_vec());
            }
            if encoded.len() > first {
                forms.push(encoded[first..].to_vec());
            }
        }
    }
    forms
}

/// Hex of `value`, lower and upper case.
pub(super) fn hex(value: &[u8]) -> Vec<Vec<u8>> {
    let lower: Vec<u8> = value.iter().flat_map(|b| format!("{b:02x}").into_bytes()).collect();
    let upper = lower.to_ascii_uppercase();
    vec![lower, upper]
}

/// Percent-encodings of `value`: every byte that needs it (RFC 3986 unreserved bytes kept, and
/// also `/` kept as Python's `quote` does, and spaces as `+` as forms do), and every byte (upper
/// and lower case).
pub(super) fn percent(value: &[u8]) -> Vec<Vec<u8>> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    let encode = |keep: &dyn Fn(u8) -> bool, plus: bool| -> Vec<u8> {
        let mut out = Vec::with_capacity(value.len() * 3);
        for &b in value {
            if keep(b) {
                out.push(b);
            } else if plus && b == b' ' {
                out.push(b'+');
            } else {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        }
        out
    };
    let all = encode(&|_| false, false);
    vec![
        encode(&unreserved, false),
        encode(&|b| unreserved(b) || b == b'/', false),
        encode(&unreserved, true),
        all.to_ascii_lowercase(),
        all,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(forms: Vec<Vec<u8>>) -> Vec<String> {
        forms.into_iter().map(|f| String::from_utf8(f).unwrap()).collect()
    }

    #[test]
    fn base64_forms_are_the_characters_that_only_the_value_decides() {
        let value = b"hunter22";
        for before in [&b""[..], b"x", b"xy"] {
            for after in [&b""[..], b"z", b"zw", b"zwv"] {
                let text = [before, value, after].concat();
                for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                    let encoded = engine.encode(&text);
                    assert!(
                        strings(base64(value)).iter().any(|f| encoded.contains(f.as_str())),
                        "{encoded} holds no form of the value"
                    );
                }
            }
        }
    }

    #[test]
    fn hex_and_percent_forms() {
        assert_eq!(strings(hex(b"a/Z")), ["612f5a", "612F5A"]);
        assert_eq!(strings(percent(b"a b/")), ["a%20b%2F", "a%20b/", "a+b%2F", "%61%20%62%2f", "%61%20%62%2F"]);
    }
}
