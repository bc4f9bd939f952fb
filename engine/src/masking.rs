//! Masking of secret values in task output, applied as output is captured, so what is stored
//! (and therefore everything read or followed later) never holds them. Each value is replaced by
//! `***`, and so are, for a multi-line value, each of its lines, and the encoded forms of each
//! ([`forms`]): base64 (standard and URL-safe, at the three alignments, wrapped at any width),
//! hex (lower and upper case) and percent-encoding. Values shorter than [`MIN_MASKED_LEN`] bytes
//! are not masked: masking every `1` or `ab` would garble logs and reveal the value by its gaps.
//!
//! Matching is one Aho-Corasick pass (leftmost-longest) over the output, so its cost is linear in
//! the output whatever the number of patterns, and the patterns are capped ([`MAX_PATTERNS`],
//! [`MAX_PATTERN_BYTES`]). Encoded forms hold no line break, so they are matched on the output
//! with single line breaks (`\n`, `\r\n`) left out: base64 or hex wrapped at any width is masked
//! too, line breaks inside it included. Values holding line breaks are matched on the output as is.
//!
//! Output arrives in chunks, and a value may be split between two: the masker holds back a tail
//! that could be the start of a pattern (the longest pattern minus one byte, and for the forms
//! matched without line breaks up to three bytes a character) until the next chunk (or the end)
//! says whether it is.

mod forms;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// What a masked value is replaced by.
pub const MASK: &[u8] = b"***";

/// The shortest value (or line of a value) that is masked.
pub const MIN_MASKED_LEN: usize = 4;

/// The most patterns a task's masker holds. Values and their lines come first, then base64, hex
/// and percent forms; forms past the cap are not masked (and a warning is logged).
pub const MAX_PATTERNS: usize = 2048;

/// The most bytes of patterns a task's masker holds (the same order and rule as [`MAX_PATTERNS`]).
pub const MAX_PATTERN_BYTES: usize = 4 << 20;

/// Encoded forms of a value, in [`forms`].
type Encoder = fn(&[u8]) -> Vec<Vec<u8>>;

/// Masks secret values in a stream of output chunks.
#[derive(Debug, Default)]
pub struct Masker {
    /// Patterns holding a line break, matched on the output as is.
    as_is: Option<Matcher>,
    /// Patterns without line breaks, matched on the output with single line breaks left out.
    joined: Option<Matcher>,
    /// Bytes held back: possibly the start of a pattern.
    pending: Vec<u8>,
}

#[derive(Debug)]
struct Matcher {
    automaton: AhoCorasick,
    longest: usize,
}

impl Matcher {
    fn build(patterns: Vec<Vec<u8>>) -> Option<Self> {
        let longest = patterns.iter().map(Vec::len).max()?;
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            // Compact for long patterns; still linear.
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&patterns);
        match automaton {
            Ok(automaton) => Some(Self { automaton, longest }),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the log masker; secrets of this task are masked by none of their forms");
                None
            }
        }
    }
}

impl Masker {
    /// A masker for these secret values.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut plain: Vec<Vec<u8>> = Vec::new();
        for value in values {
            for form in std::iter::once(value).chain(value.lines()) {
                let form = form.trim_end_matches('\r');
                if form.len() >= MIN_MASKED_LEN && !plain.iter().any(|p| p == form.as_bytes()) {
                    plain.push(form.as_bytes().to_vec());
                }
            }
        }
        let encoders: [Encoder; 3] = [forms::base64, forms::hex, forms::percent];
        let tiers = std::iter::once(plain.clone())
            .chain(encoders.iter().map(|encode| plain.iter().flat_map(|p| encode(p)).collect()));
        let (mut as_is, mut joined) = (Vec::new(), Vec::new());
        let (mut count, mut bytes, mut dropped) = (0usize, 0usize, 0usize);
        for pattern in tiers.flatten() {
            if pattern.len() < MIN_MASKED_LEN {
                continue;
            }
            if count >= MAX_PATTERNS || bytes + pattern.len() > MAX_PATTERN_BYTES {
                dropped += 1;
                continue;
            }
            count += 1;
            bytes += pattern.len();
            if pattern.iter().any(|&b| is_break(b)) { as_is.push(pattern) } else { joined.push(pattern) }
        }
        if dropped > 0 {
            tracing::warn!(dropped, "too many secret forms to mask; the rest are not masked");
        }
        for list in [&mut as_is, &mut joined] {
            list.sort();
            list.dedup();
        }
        Self { as_is: Matcher::build(as_is), joined: Matcher::build(joined), pending: Vec::new() }
    }

    /// Whether there is anything to mask at all.
    pub fn is_empty(&self) -> bool {
        self.as_is.is_none() && self.joined.is_none()
    }

    /// Masks a chunk; may hold back its last bytes until the next call or [`Masker::finish`].
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.is_empty() {
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
        // A match starting before `cut` is settled: every pattern starting there fits in `buf`.
        let mut cut = buf.len();
        let mut ranges = Vec::new();
        if let Some(m) = &self.as_is {
            if !at_end {
                cut = cut.min(buf.len().saturating_sub(m.longest - 1));
            }
            ranges.extend(m.automaton.find_iter(buf).map(|f| (f.start(), f.end())));
        }
        if let Some(m) = &self.joined {
            let view = Joined::new(buf, at_end);
            if !at_end {
                let settled = view.bytes.len().saturating_sub(m.longest - 1);
                cut = cut.min(view.raw.get(settled).copied().unwrap_or(view.end));
            }
            let found = m.automaton.find_iter(&view.bytes[..]);
            ranges.extend(found.map(|f| (view.raw[f.start()], view.raw[f.end() - 1] + 1)));
        }
        ranges.retain(|&(start, _)| start < cut);
        ranges.sort_unstable();
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        for (start, end) in ranges {
            if end <= i {
                continue;
            }
            if start >= i {
                out.extend_from_slice(&buf[i..start]);
                out.extend_from_slice(MASK);
            }
            i = end;
        }
        let release = i.max(cut);
        out.extend_from_slice(&buf[i..release]);
        (out, release)
    }
}

fn is_break(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// Output with single line breaks (`\n`, `\r\n`) left out, and where each byte came from.
struct Joined {
    bytes: Vec<u8>,
    raw: Vec<usize>,
    /// Where the view ends in the output: before a trailing line break the next chunk could
    /// still lengthen (and so keep).
    end: usize,
}

impl Joined {
    fn new(buf: &[u8], at_end: bool) -> Self {
        let (mut bytes, mut raw) = (Vec::with_capacity(buf.len()), Vec::with_capacity(buf.len()));
        let mut i = 0;
        let mut end = buf.len();
        while i < buf.len() {
            if !is_break(buf[i]) {
                bytes.push(buf[i]);
                raw.push(i);
                i += 1;
                continue;
            }
            let run = buf[i..].iter().take_while(|&&b| is_break(b)).count();
            if !at_end && i + run == buf.len() && run <= 2 {
                end = i;
                break;
            }
            if !matches!(&buf[i..i + run], b"\n" | b"\r\n") {
                bytes.extend_from_slice(&buf[i..i + run]);
                raw.extend(i..i + run);
            }
            i += run;
        }
        Self { bytes, raw, end }
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
        let mut out = m.feed(b"x secr");
        out.extend(m.feed(b"et! "));
        out.extend(m.finish());
        assert_eq!(out, b"x secret! ");
    }

    #[test]
    fn a_long_output_is_released_but_for_the_longest_pattern_minus_one() {
        let mut m = Masker::new(["secretvalue"]);
        let longest = "%73%65%63%72%65%74%76%61%6C%75%65".len();
        let released = m.feed(&[b'.'; 1000]);
        assert_eq!(released.len(), 1000 - (longest - 1));
        // Line breaks count at most three bytes to a character of the joined view.
        let released = m.feed(&b"\n.".repeat(1000));
        assert!(released.len() >= 2000 - 3 * longest, "{}", released.len());
    }

    /// Every encoded form of `value`, as a task would print it.
    fn encodings(value: &str) -> Vec<String> {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let bytes = value.as_bytes();
        let mut all = Vec::new();
        for prefix in ["", "a", "ab"] {
            for suffix in ["", "z", "zw"] {
                let text = format!("{prefix}{value}{suffix}");
                all.push(STANDARD.encode(&text));
                all.push(URL_SAFE.encode(&text));
            }
        }
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        all.push(hex.to_uppercase());
        all.push(hex);
        let quoted: String = bytes
            .iter()
            .map(|&b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        all.push(quoted);
        all.push(bytes.iter().map(|b| format!("%{b:02x}")).collect());
        all
    }

    #[test]
    fn every_encoding_is_masked_whatever_the_chunking() {
        let secret = "s3cr3t/value?&=+ü";
        for encoded in encodings(secret) {
            let output = format!("before {encoded} after\n");
            for chunk in [1, 2, 3, 5, 7, 64] {
                let masked = String::from_utf8(mask_in_chunks(&[secret], output.as_bytes(), chunk)).unwrap();
                assert!(masked.starts_with("before ") && masked.ends_with(" after\n"), "{masked}");
                assert!(masked.contains("***"), "{encoded} in {masked} (chunk {chunk})");
                let left = masked.trim_start_matches("before ").trim_end_matches(" after\n").replace("***", "");
                // At most the characters the bytes around the value decide (and padding) stay.
                assert!(left.len() <= 10, "{encoded} left {left:?} (chunk {chunk})");
            }
        }
    }

    #[test]
    fn base64_wrapped_at_any_width_is_masked() {
        use base64::Engine as _;
        let secret = "correct horse battery staple";
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("user:{secret}\n"));
        for width in [4, 7, 19, 60, 76] {
            for eol in ["\n", "\r\n"] {
                let wrapped: Vec<String> =
                    encoded.as_bytes().chunks(width).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
                let output = format!("{}{eol}", wrapped.join(eol));
                for chunk in [1, 3, 50] {
                    let masked = String::from_utf8(mask_in_chunks(&[secret], output.as_bytes(), chunk)).unwrap();
                    let joined: String = masked.split(['\r', '\n']).collect();
                    assert!(joined.contains("***"), "width {width} chunk {chunk}: {masked:?}");
                    // What stays is the part the prefix and suffix decide.
                    assert!(joined.replace("***", "").len() <= 12, "width {width} chunk {chunk}: {masked:?}");
                }
            }
        }
    }

    #[test]
    fn unrelated_text_and_line_structure_are_untouched() {
        let output = b"hello world\n\n\r\nc2VjcmV0 73656372 %73%65 line\r\nend";
        for chunk in [1, 4, 100] {
            assert_eq!(mask_in_chunks(&["secret-value-42"], output, chunk), output, "chunk {chunk}");
        }
    }

    #[test]
    fn patterns_are_capped() {
        let values: Vec<String> = (0..1000).map(|i| format!("secret-number-{i:04}")).collect();
        let m = Masker::new(values.iter().map(String::as_str));
        let joined = m.joined.as_ref().unwrap();
        assert!(joined.automaton.patterns_len() <= MAX_PATTERNS);
        // Values themselves come first: all still masked.
        assert_eq!(
            mask_in_chunks(&values.iter().map(String::as_str).collect::<Vec<_>>(), b"x secret-number-0999 y", 3),
            b"x *** y"
        );
    }
}
