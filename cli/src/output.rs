//! Printing: JSON exactly as the API sent it, or aligned tables for people.

use std::io::Write;

use serde::Serialize;
use time::OffsetDateTime;

use crate::Ctx;

/// Prints `value` as JSON, or as the text `human` makes of it.
pub fn emit<T: Serialize + ?Sized>(ctx: &Ctx, value: &T, human: impl FnOnce(&T) -> String) {
    if ctx.human() {
        let text = human(value);
        if !text.is_empty() {
            print_line(text.trim_end_matches('\n'));
        }
    } else {
        json(value);
    }
}

/// Prints a value as pretty JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    print_line(&serde_json::to_string_pretty(value).expect("API objects serialize"));
}

/// Prints one line to stdout ([`write_stdout`]).
pub fn print_line(text: &str) {
    write_stdout(format!("{text}\n").as_bytes());
}

/// Writes to stdout and flushes. A reader that went away (`gofer … | head`) ends the process at
/// once, quietly and with 0, as SIGPIPE ends other tools: it wants no more, and that is no error.
pub fn write_stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

/// Ends the process after a failed write to stdout: quietly with 0 when the reader went away,
/// else saying why.
pub fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing the output: {e}");
    std::process::exit(i32::from(crate::EXIT_USAGE));
}

/// Aligned columns under upper-case headers.
pub fn table<const N: usize>(headers: [&str; N], rows: impl IntoIterator<Item = [String; N]>) -> String {
    let rows: Vec<[String; N]> = rows.into_iter().collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = String>| {
        let text: Vec<String> = cells.zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().map(|h| h.to_uppercase()));
    for row in rows {
        line(&mut row.into_iter());
    }
    out
}

/// `key: value` lines for one object.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    pairs.iter().map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:"))).collect()
}

/// A time as RFC 3339 (seconds), `-` when absent.
pub fn time(t: Option<OffsetDateTime>) -> String {
    t.map(|t| {
        let t = t.replace_nanosecond(0).unwrap_or(t);
        t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    })
    .unwrap_or_else(|| "-".into())
}

/// A duration in seconds, short: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{}ms", (seconds * 1000.0).round() as i64)
    } else if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else if seconds < 3600.0 {
        let s = seconds.round() as i64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = (seconds / 60.0).round() as i64;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

/// Seconds from `from` to `to` (or now).
pub fn elapsed(from: Option<OffsetDateTime>, to: Option<OffsetDateTime>) -> Option<f64> {
    let from = from?;
    let to = to.unwrap_or_else(OffsetDateTime::now_utc);
    Some((to - from).as_seconds_f64().max(0.0))
}

/// `-` for an absent value.
pub fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_durations_are_short() {
        let t = table(["id", "state"], [["a".to_owned(), "running".to_owned()], ["long-id".into(), "-".into()]]);
        assert_eq!(t, "ID       STATE\na        running\nlong-id  -\n");
        assert_eq!(duration(0.25), "250ms");
        assert_eq!(duration(12.34), "12.3s");
        assert_eq!(duration(245.0), "4m05s");
        assert_eq!(duration(7380.0), "2h03m");
    }
}
