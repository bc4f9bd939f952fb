//! Masking of secret values in task output, applied as output is captured, so what is stored
//! (and therefore everything read or followed later) never holds them. Each value is replaced by
//! `***`, and so are, for a multi-line value, each of its lines, and the encoded forms of each
//! ([`forms`]): base64 (standard and URL-safe, at the three alignments), hex (lower and upper
//! case) and percent-encoding. Values shorter than [`MIN_MASKED_LEN`] bytes are not masked:
//! masking every `1` or `ab` would garble logs and reveal the value by its gaps.
//!
//! All patterns are matched in one Aho-Corasick pass (leftmost-longest) over the output seen with
//! its single line breaks left out ([`Joined`]), so a form wrapped at any width is caught too
//! (a value's own single line breaks are left out of its pattern likewise). A match becomes one
//! `***`, the line breaks inside it included: keeping them would show how the masked text was
//! wrapped, and so its length. The cost is linear in the output whatever the number of patterns
//! (a held-back tail, shorter than the longest pattern, is scanned again with the next chunk),
//! and the patterns are capped ([`MAX_PATTERNS`], [`MAX_PATTERN_BYTES`]).
//!
//! Output arrives in chunks, and a pattern may be split between two. The masker holds back only
//! the longest tail of the output that is a proper prefix of a pattern (shorter than the longest
//! pattern, then): a pattern starting before that tail cannot reach past the chunk, so what comes
//! before it is settled, masked as the whole output would be, and released by the call that
//! brought it. A line that cannot start a pattern is never held back.

mod forms;

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// What a masked value is replaced by.
pub const MASK: &[u8] = b"***";

/// The shortest value (or line of a value) that is masked.
pub const MIN_MASKED_LEN: usize = 4;

/// The most patterns a task's masker holds. Values and their lines come first, then base64, hex
/// and percent forms; forms past the cap are not masked (and a warning is logged).
pub const MAX_PATTERNS: usize = 2048;

/// The most bytes of patterns a task's masker holds (the same order and rule as
/// [`MAX_PATTERNS`]). It bounds the automaton and the prefix hashes to about 20 MiB.
pub const MAX_PATTERN_BYTES: usize = 1 << 20;

/// Masks secret values in a stream of output chunks.
#[derive(Debug, Default)]
pub struct Masker {
    /// What to look for; `None` when no value is long enough to be masked.
    patterns: Option<Patterns>,
    /// Bytes held back: possibly the start of a pattern.
    pending: Vec<u8>,
}

impl Masker {
    /// A masker for these secret values.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let (mut texts, mut seen): (Vec<&[u8]>, HashSet<&[u8]>) = Default::default();
        for value in values {
            for text in std::iter::once(value).chain(value.lines()) {
                let text = text.trim_end_matches('\r').as_bytes();
                if joined(text).len() >= MIN_MASKED_LEN && seen.insert(text) {
                    texts.push(text);
                }
            }
        }
        let mut selection = Selection::default();
        for text in &texts {
            selection.offer(joined(text));
        }
        for encode in forms::ENCODERS {
            for text in &texts {
                for form in encode(text) {
                    selection.offer(form);
                }
            }
        }
        if selection.dropped > 0 {
            tracing::warn!(dropped = selection.dropped, "too many secret forms to mask; the rest are not masked");
        }
        Self { patterns: Patterns::build(selection.patterns), pending: Vec::new() }
    }

    /// Whether there is anything to mask at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_none()
    }

    /// Masks a chunk. Holds back only a tail that could be the start of a pattern, until the next
    /// call or [`Masker::finish`] settles it; everything before it is answered now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(patterns) = &self.patterns else {
            return chunk.to_vec();
        };
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        let (out, settled) = patterns.mask(&buf, true);
        self.pending = buf.split_off(settled);
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
        match &self.patterns {
            Some(patterns) => patterns.mask(&buf, false).0,
            None => buf,
        }
    }
}

/// The distinct patterns offered: the first offered are kept, up to the caps.
#[derive(Default)]
struct Selection {
    patterns: HashSet<Vec<u8>>,
    bytes: usize,
    dropped: usize,
}

impl Selection {
    fn offer(&mut self, pattern: Vec<u8>) {
        if pattern.len() < MIN_MASKED_LEN || self.patterns.contains(&pattern) {
            return;
        }
        if self.patterns.len() >= MAX_PATTERNS || self.bytes + pattern.len() > MAX_PATTERN_BYTES {
            self.dropped += 1;
            return;
        }
        self.bytes += pattern.len();
        self.patterns.insert(pattern);
    }
}

/// A masker's patterns, and what finds them.
#[derive(Debug)]
struct Patterns {
    automaton: AhoCorasick,
    /// [`Hash`]es of every proper prefix of every pattern, to find a held-back tail.
    prefixes: HashSet<u64>,
    longest: usize,
}

impl Patterns {
    fn build(patterns: HashSet<Vec<u8>>) -> Option<Self> {
        let longest = patterns.iter().map(Vec::len).max()?;
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            // Compact for long patterns (a DFA of a hundred long ones would take hundreds of
            // MiB); as linear.
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&patterns)
            .expect("the pattern caps keep the automaton far below its size limits");
        let mut prefixes = HashSet::new();
        for pattern in &patterns {
            let mut prefix = Hash::default();
            for &b in &pattern[..pattern.len() - 1] {
                prefix.push_back(b);
                prefixes.insert(prefix.value);
            }
        }
        Some(Self { automaton, prefixes, longest })
    }

    /// Masks `output`; answers the masked text and how many bytes of `output` it stands for.
    /// When more output may follow, the rest (from the longest tail that is a proper prefix of a
    /// pattern) is not settled and not answered.
    fn mask(&self, output: &[u8], more_may_follow: bool) -> (Vec<u8>, usize) {
        let view = Joined::new(output);
        let holds = if more_may_follow { self.prefix_starts(&view.bytes) } else { Vec::new() };
        // Where the tail to hold back starts when the search is at `from`: the first proper
        // prefix there or after. A pattern starting before it ends within the output.
        let hold_from = |from: usize| holds.get(holds.partition_point(|&start| start < from)).copied();
        let mut out = Vec::with_capacity(output.len());
        let (mut copied, mut searched) = (0, 0);
        for found in self.automaton.find_iter(&view.bytes) {
            if hold_from(searched).is_some_and(|hold| hold <= found.start()) {
                // The next bytes may make a longer match here, or one starting before it.
                break;
            }
            out.extend_from_slice(&output[copied..view.raw[found.start()]]);
            out.extend_from_slice(MASK);
            copied = view.raw[found.end() - 1] + 1;
            searched = found.end();
        }
        let settled = hold_from(searched).map_or(output.len(), |hold| view.raw[hold]);
        out.extend_from_slice(&output[copied..settled]);
        (out, settled)
    }

    /// Where, in `view`, the tails that are proper prefixes of a pattern start, in increasing
    /// order. Tails are hashed from the shortest to the longest pattern less one byte, each from
    /// the last in constant time, so the cost is bounded by the longest pattern whatever the
    /// output. A hash collision can only hold back a tail that the next chunk or the end then
    /// settles: it never lets a secret through nor loses output. No pattern starts with a line
    /// break, so neither does a held-back tail, and the next chunk's view joins lines as the
    /// whole output's would.
    fn prefix_starts(&self, view: &[u8]) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut tail = Hash::default();
        for start in (view.len().saturating_sub(self.longest - 1)..view.len()).rev() {
            tail.push_front(view[start]);
            if !is_break(view[start]) && self.prefixes.contains(&tail.value) {
                starts.push(start);
            }
        }
        starts.reverse();
        starts
    }
}

/// A polynomial hash of a byte string `s`, `Σ (s[i] + 1)·BASE^i` modulo the prime 2^61 − 1, that
/// grows by a byte at either end in constant time: at the back for a pattern's prefixes, at the
/// front for the output's tails.
struct Hash {
    value: u64,
    /// `BASE^len`.
    power: u64,
}

impl Hash {
    const MODULUS: u64 = (1 << 61) - 1;
    const BASE: u64 = 0x0b3d_5f27_a4c1_9e63;

    fn mul(a: u64, b: u64) -> u64 {
        (u128::from(a) * u128::from(b) % u128::from(Self::MODULUS)) as u64
    }

    fn push_back(&mut self, b: u8) {
        self.value = (self.value + Self::mul(u64::from(b) + 1, self.power)) % Self::MODULUS;
        self.power = Self::mul(self.power, Self::BASE);
    }

    fn push_front(&mut self, b: u8) {
        self.value = (u64::from(b) + 1 + Self::mul(self.value, Self::BASE)) % Self::MODULUS;
    }
}

impl Default for Hash {
    fn default() -> Self {
        Self { value: 0, power: 1 }
    }
}

fn is_break(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// `text` as patterns see it: single line breaks left out as in [`Joined`], and none at either
/// end (they hide nothing, and a pattern must not start with one, see
/// [`Patterns::prefix_starts`]).
fn joined(text: &[u8]) -> Vec<u8> {
    let bytes = Joined::new(text).bytes;
    let start = bytes.iter().position(|&b| !is_break(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| !is_break(b)).map_or(start, |last| last + 1);
    bytes[start..end].to_vec()
}

/// Output as patterns are matched on: single line breaks (`\n`, `\r\n`) left out, so that a form
/// wrapped at any width reads as one line; longer runs (blank lines) stay. A `\r` ending the
/// output is left out too: it may be the start of a `\r\n`, and no pattern ends with it.
struct Joined {
    bytes: Vec<u8>,
    /// Where each byte is in the output.
    raw: Vec<usize>,
}

impl Joined {
    fn new(output: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(output.len());
        let mut raw = Vec::with_capacity(output.len());
        let mut i = 0;
        while i < output.len() {
            let run = output[i..].iter().take_while(|&&b| is_break(b)).count();
            if run == 0 {
                bytes.push(output[i]);
                raw.push(i);
                i += 1;
                continue;
            }
            let breaks = &output[i..i + run];
            let single = matches!(breaks, b"\n" | b"\r\n") || (breaks == b"\r" && i + run == output.len());
            if !single {
                bytes.extend_from_slice(breaks);
                raw.extend(i..i + run);
            }
            i += run;
        }
        Self { bytes, raw }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

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

    fn mask_split_at(m: &mut Masker, output: &[u8], splits: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut from = 0;
        for at in splits.iter().copied().chain([output.len()]) {
            out.extend(m.feed(&output[from..at]));
            from = at;
        }
        out.extend(m.finish());
        out
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn values_and_their_base64_are_masked_whatever_the_chunking() {
        let output = b"token=hunter22 b64=aHVudGVyMjI= done hunter2";
        for chunk in 1..output.len() {
            assert_eq!(
                text(mask_in_chunks(&["hunter22"], output, chunk)),
                "token=*** b64=***= done hunter2",
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn lines_of_a_multiline_value_are_masked_and_short_values_are_not() {
        let out = mask_in_chunks(&["line-one\nline-two", "ab"], b"x line-two y ab YWI", 3);
        assert_eq!(text(out), "x *** y ab YWI");
        let out = mask_in_chunks(&["line-one\nline-two"], b"<line-one\r\nline-two>", 3);
        assert_eq!(text(out), "<***>");
    }

    #[test]
    fn without_values_output_passes_through_at_once() {
        let mut m = Masker::new([]);
        assert!(m.is_empty());
        assert_eq!(m.feed(b"abc"), b"abc");
        assert!(m.finish().is_empty());
        assert!(Masker::new(["ab", "\nxyz\n"]).is_empty());
    }

    #[test]
    fn text_that_only_starts_like_a_value_is_released_when_it_diverges() {
        let mut m = Masker::new(["secretvalue"]);
        assert_eq!(m.feed(b"x secr"), b"x ");
        assert_eq!(m.held_back(), b"secr");
        assert_eq!(m.feed(b"et! "), b"secret! ");
        assert_eq!(m.finish(), b"");
    }

    /// The attach tests wait for `ready` in a live log while their task sleeps, with this secret.
    #[test]
    fn a_short_line_is_released_by_the_call_that_brought_it() {
        let mut m = Masker::new(["s3cr3t-value"]);
        assert_eq!(m.feed(b"ready\n"), b"ready\n");
        assert!(m.held_back().is_empty());
        // Only the part that could start a value waits, its line break with it (a wrapped form
        // could go on in the next line).
        assert_eq!(m.feed(b"done\ns3cr"), b"done\n");
        assert_eq!(m.feed(b"3t-v\n"), b"");
        assert_eq!(m.held_back(), b"s3cr3t-v\n");
        assert_eq!(m.feed(b"\n"), b"s3cr3t-v\n\n");
        assert_eq!(m.feed(b"ready\r\n"), b"ready\r\n");
        assert!(m.finish().is_empty());
    }

    #[test]
    fn the_tail_held_back_is_the_longest_possible_start_of_a_pattern() {
        let mut m = Masker::new(["abcdefgh", "cdxyzw"]);
        // "abcd" could still become either; "cd" only the second.
        assert_eq!(m.feed(b"..abcd"), b"..");
        assert_eq!(m.feed(b"xy"), b"ab");
        assert_eq!(m.held_back(), b"cdxy");
        // A match is settled although a prefix starts inside it; what follows it is held back only
        // from where a pattern could start.
        let mut m = Masker::new(["abcdefgh", "fghijk", "ghxyzq", "xyzw"]);
        assert_eq!(m.feed(b"abcdefghi"), b"***i");
        assert_eq!(m.feed(b"abcdefghxy"), b"***");
        assert_eq!(m.held_back(), b"xy");
        assert_eq!(m.finish(), b"xy");
    }

    /// Every encoded form of `value` a task could print: base64 of the value preceded by 0, 1 or
    /// 2 bytes (and followed by 0, 1 or 2), hex, percent-encoding.
    fn encodings(value: &str) -> Vec<String> {
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
            .map(|&b| match b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                true => (b as char).to_string(),
                false => format!("%{b:02X}"),
            })
            .collect();
        all.push(quoted);
        all.push(bytes.iter().map(|b| format!("%{b:02x}")).collect());
        all
    }

    #[test]
    fn every_encoding_is_masked_whatever_the_chunking() {
        // Reserved characters, and bytes whose base64 holds `+` and `/` (standard) or `-`, `_`.
        let secret = "s3cr3t/value?&=+ü~>?";
        for encoded in encodings(secret) {
            let output = format!("before {encoded} after\n");
            for chunk in [1, 2, 3, 5, 7, 64] {
                let masked = text(mask_in_chunks(&[secret], output.as_bytes(), chunk));
                let inner = masked.strip_prefix("before ").and_then(|m| m.strip_suffix(" after\n"));
                let inner = inner.unwrap_or_else(|| panic!("{masked:?}"));
                let (head, tail) = inner.split_once("***").unwrap_or_else(|| panic!("{encoded} in {masked:?}"));
                // What stays is what the bytes around the value decide: up to three characters
                // before, one after, then the suffix's own and the padding.
                assert!(head.len() <= 3, "{encoded} kept {head:?} (chunk {chunk})");
                assert!(tail.trim_end_matches('=').len() <= 4, "{encoded} kept {tail:?} (chunk {chunk})");
            }
        }
    }

    #[test]
    fn hex_in_either_case_and_percent_encoding_are_masked_whole() {
        let secret = "p@ss word/ü?";
        let output = "a=7040737320776f72642fc3bc3f b=7040737320776F72642FC3BC3F \
                      c=p%40ss%20word%2F%C3%BC%3F d=p%40ss+word%2F%C3%BC%3F e=p%40ss%20word/%C3%BC%3F";
        for chunk in [1, 4, 1000] {
            assert_eq!(text(mask_in_chunks(&[secret], output.as_bytes(), chunk)), "a=*** b=*** c=*** d=*** e=***");
        }
    }

    #[test]
    fn base64_wrapped_at_any_width_is_masked_with_its_line_breaks() {
        let secret = "correct horse battery staple";
        for before in ["", "u", "us"] {
            let encoded = STANDARD.encode(format!("{before}{secret}\n"));
            for width in 1..=76 {
                for eol in ["\n", "\r\n"] {
                    let lines: Vec<&str> =
                        encoded.as_bytes().chunks(width).map(|c| std::str::from_utf8(c).unwrap()).collect();
                    let output = format!("begin{eol}{}{eol}end{eol}", lines.join(eol));
                    let whole = text(mask_in_chunks(&[secret], output.as_bytes(), output.len()));
                    for chunk in [1, 3, 50] {
                        let masked = text(mask_in_chunks(&[secret], output.as_bytes(), chunk));
                        assert_eq!(masked, whole, "width {width} chunk {chunk}");
                    }
                    let body = whole.strip_prefix(&format!("begin{eol}")).unwrap();
                    let body = body.strip_suffix(&format!("{eol}end{eol}")).unwrap();
                    let (head, tail) = body.split_once("***").unwrap_or_else(|| panic!("width {width}: {whole:?}"));
                    let kept = |s: &str| s.chars().filter(|c| !is_break(*c as u8)).count();
                    // The characters the prefix decides, and those of the final `\n` and padding.
                    assert!(kept(head) <= 3 && kept(tail) <= 4, "width {width}: {whole:?}");
                }
            }
        }
    }

    #[test]
    fn unrelated_text_and_line_structure_are_untouched() {
        let output = b"hello world\n\n\r\nc2VjcmV0 73656372 %73%65 line\r\nend\r";
        for chunk in [1, 4, 100] {
            assert_eq!(mask_in_chunks(&["secret-value-42"], output, chunk), output, "chunk {chunk}");
        }
    }

    /// A sample with every kind of match, near misses and line breaks, and what it masks to.
    const VALUES: [&str; 5] = ["hunter22", "abcdef", "cdefgh", "multi\nline-value", "ab"];
    const SAMPLE: &str = "x hunter22 y hunter22\nhunt\ner22 aHVudGVy\nMjI= 68756E7465723232\r\n\
                          abcdefgh cdefghi abcde multi\nline-value\n\nmulti\r\n\nline-value multi\r\nline-value hunter2 ab\n\r";
    const MASKED: &str = "x *** y ***\n*** ***= ***\r\n***gh ***i abcde ***\n\n***\r\n\n*** *** hunter2 ab\n\r";

    #[test]
    fn every_split_of_the_output_masks_it_as_a_whole() {
        let output = SAMPLE.as_bytes();
        let mut m = Masker::new(VALUES);
        assert_eq!(text(mask_split_at(&mut m, output, &[])), MASKED);
        for first in 0..=output.len() {
            for second in first..=output.len() {
                let masked = mask_split_at(&mut m, output, &[first, second]);
                assert_eq!(text(masked), MASKED, "split at {first} and {second}");
            }
        }
        for chunk in 1..output.len() {
            assert_eq!(text(mask_in_chunks(&VALUES, output, chunk)), MASKED, "chunk size {chunk}");
        }
    }

    #[test]
    fn a_chunk_that_could_not_be_stored_is_masked_the_same_when_fed_again() {
        let output = SAMPLE.as_bytes();
        let mut m = Masker::new(VALUES);
        let mut out = Vec::new();
        for piece in output.chunks(5) {
            let held = m.held_back().to_vec();
            m.feed(piece);
            m.restore(held);
            out.extend(m.feed(piece));
        }
        out.extend(m.finish());
        assert_eq!(text(out), MASKED);
    }

    #[test]
    fn a_large_output_of_matches_and_near_misses_is_masked_in_one_pass() {
        // Near misses of a long value keep a long tail possible, and matches are everywhere.
        let long = "a".repeat(2000) + "b";
        let secrets = [long.as_str(), "hunter22"];
        let mut m = Masker::new(secrets);
        let mut output = Vec::new();
        for _ in 0..1000 {
            output.extend_from_slice("a".repeat(1999).as_bytes());
            output.extend_from_slice(b"c hunter22 aHVudGVyMjI\n");
        }
        output.extend_from_slice(long.as_bytes());
        let mut out = Vec::new();
        for piece in output.chunks(64 * 1024) {
            out.extend(m.feed(piece));
            assert!(m.held_back().len() < long.len());
        }
        out.extend(m.finish());
        let expected = ("a".repeat(1999) + "c *** ***\n").repeat(1000) + "***";
        assert!(text(out) == expected);
    }

    #[test]
    fn patterns_are_capped_values_first() {
        let values: Vec<String> = (0..1000).map(|i| format!("secret-number-{i:04}")).collect();
        let m = Masker::new(values.iter().map(String::as_str));
        let patterns = m.patterns.as_ref().unwrap();
        assert_eq!(patterns.automaton.patterns_len(), MAX_PATTERNS);
        let all: Vec<&str> = values.iter().map(String::as_str).collect();
        assert_eq!(mask_in_chunks(&all, b"x secret-number-0999 y", 3), b"x *** y");

        let mut selection = Selection::default();
        let big = vec![b'x'; MAX_PATTERN_BYTES / 2];
        selection.offer(big.clone());
        selection.offer(big.clone());
        selection.offer([big.as_slice(), b"y"].concat());
        selection.offer(b"fits".to_vec());
        assert_eq!((selection.patterns.len(), selection.bytes, selection.dropped), (2, MAX_PATTERN_BYTES / 2 + 4, 1));
    }
}
