//! Masking of secret values in task output, applied as output is captured, so what is stored
//! (and therefore everything read or followed later) never holds them. Each value is replaced by
//! `***`, and so are its base64 forms (standard and URL-safe, without the padding) and, for a
//! multi-line value, each of its lines. Values shorter than [`MIN_MASKED_LEN`] bytes are not
//! masked: masking every `1` or `ab` would garble logs and reveal the value by its gaps.
//!
//! Output arrives in chunks, and a value may be split between two: the masker holds back a tail
//! that could be the start of a value until the next chunk (or the end) says whether it is.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// What a masked value is replaced by.
pub const MASK: &[u8] = b"***";

/// The shortest value (or line of a value) that is masked.
pub const MIN_MASKED_LEN: usize = 4;

/// Masks secret values in a stream of output chunks.
#[derive(Debug, Default)]
pub struct Masker {
    /// Patterns, longest first (so a value wins over its own prefix).
    patterns: Vec<Vec<u8>>,
    /// Bytes held back: possibly the start of a pattern.
    pending: Vec<u8>,
}

impl Masker {
    /// A masker for these secret values.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for value in values {
            let mut forms = vec![value.to_owned()];
            forms.extend(value.lines().map(str::to_owned));
            for form in forms {
                let form = form.trim_end_matches('\r');
                if form.len() < MIN_MASKED_LEN {
                    continue;
                }
                patterns.push(form.as_bytes().to_vec());
                patterns.push(STANDARD_NO_PAD.encode(form).into_bytes());
                patterns.push(URL_SAFE_NO_PAD.encode(form).into_bytes());
            }
        }
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        Self { patterns, pending: Vec::new() }
    }

    /// Whether there is anything to mask at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Masks a chunk; may hold back its last bytes until the next call or [`Masker::finish`].
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.patterns.is_empty() {
            return chunk.to_vec();
        }
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        let (out, rest) = self.scan(&buf, false);
        self.pending = buf[rest..].to_vec();
        out
    }

    /// The bytes held back so far (to [`Masker::restore`] when a masked chunk could not be stored
    /// and will be fed again).
    pub fn held_back(&self) -> &[u8] {
        &self.pending
    }

    /// Puts back bytes held back before a chunk that will be fed again.
    pub fn restore(&mut self, held_back: Vec<u8>) {
        self.pending = held_back;
    }

    /// Masks and returns whatever was held back (the output ended).
    pub fn finish(&mut self) -> Vec<u8> {
        let buf = std::mem::take(&mut self.pending);
        self.scan(&buf, true).0
    }

    /// Masks `buf`; answers the output and where the held-back rest starts.
    fn scan(&self, buf: &[u8], at_end: bool) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        while i < buf.len() {
            let rest = &buf[i..];
            if let Some(p) = self.patterns.iter().find(|p| rest.starts_with(p)) {
                out.extend_from_slice(MASK);
                i += p.len();
                continue;
            }
            if !at_end && self.patterns.iter().any(|p| p.len() > rest.len() && p.starts_with(rest)) {
                // Possibly a value cut by the chunk boundary: wait for more.
                return (out, i);
            }
            out.push(buf[i]);
            i += 1;
        }
        (out, buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_in_chunks(values: &[&str], output: &[u8], chunk: usize) -> Vec<u8> {
        let mut m = Masker::new(values.iter().copied());
        let mut out = Vec::new();
        for piece in output.chunks(chunk) {
            out.extend(m.feed(piece));
        }
        out.extend(m.finish());
        out
    }

    #[test]
    fn values_and_their_base64_are_masked_whatever_the_chunking() {
        let output = b"token=hunter22 b64=aHVudGVyMjI= done hunter2";
        for chunk in 1..output.len() {
            assert_eq!(
                String::from_utf8(mask_in_chunks(&["hunter22"], output, chunk)).unwrap(),
                "token=*** b64=***= done hunter2",
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn lines_of_a_multiline_value_are_masked_and_short_values_are_not() {
        let out = mask_in_chunks(&["line-one\nline-two", "ab"], b"x line-two y ab", 3);
        assert_eq!(String::from_utf8(out).unwrap(), "x *** y ab");
    }

    #[test]
    fn without_values_output_passes_through_at_once() {
        let mut m = Masker::new([]);
        assert!(m.is_empty());
        assert_eq!(m.feed(b"abc"), b"abc");
        assert!(m.finish().is_empty());
    }

    #[test]
    fn text_that_only_starts_like_a_value_is_released_when_it_diverges() {
        let mut m = Masker::new(["secretvalue"]);
        assert_eq!(m.feed(b"x secr"), b"x ");
        assert_eq!(m.feed(b"et! "), b"secret! ");
        assert_eq!(m.finish(), b"");
    }
}
