//! Where the CLI connects and as whom: flags, then environment, then the config file that
//! `gofer login` writes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::CliError;
use crate::args::Global;

/// What `gofer login` saves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The server's URL.
    pub host: Option<String>,
    /// The API token.
    pub token: Option<String>,
    /// The default namespace.
    pub namespace: Option<String>,
}

/// The resolved settings of one invocation.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: Option<String>,
    pub token: Option<String>,
    pub namespace: Option<String>,
    pub file: Option<PathBuf>,
}

fn env(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// The config file: `--cli-config`, or `gofer/config.json` in the user's config directory.
pub fn config_path(global: &Global) -> Option<PathBuf> {
    if let Some(path) = &global.cli_config {
        return Some(path.clone());
    }
    let dir = env(&["XDG_CONFIG_HOME"])
        .map(PathBuf::from)
        .or_else(|| env(&["HOME"]).map(|h| PathBuf::from(h).join(".config")))?;
    Some(dir.join("gofer").join("config.json"))
}

impl Settings {
    /// Flags win over the environment, which wins over the saved file. The task environment's
    /// `GOFER_API_URL`, `GOFER_API_TOKEN` (a run token) and `GOFER_NAMESPACE_ID` serve when
    /// nothing else is set, so `gofer` inside a task needs no setup.
    pub fn resolve(global: &Global) -> Result<Self, CliError> {
        let file = config_path(global);
        let saved: Saved = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CliError::Io(format!("reading {}: {e}", path.display())))?;
                serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
            }
            _ => Saved::default(),
        };
        Ok(Self {
            host: global
                .host
                .clone()
                .or_else(|| env(&["GOFER_HOST"]))
                .or(saved.host)
                .or_else(|| env(&["GOFER_API_URL"])),
            token: global
                .token
                .clone()
                .or_else(|| env(&["GOFER_TOKEN"]))
                .or(saved.token)
                .or_else(|| env(&["GOFER_API_TOKEN"])),
            namespace: global
                .namespace
                .clone()
                .or_else(|| env(&["GOFER_NAMESPACE"]))
                .or(saved.namespace)
                .or_else(|| env(&["GOFER_NAMESPACE_ID"])),
            file,
        })
    }

    /// A client, when host and token are known.
    pub fn client(&self) -> Result<gofer_sdk::Client, CliError> {
        let host = self.host()?;
        let token = self.token.as_deref().ok_or_else(|| {
            CliError::Usage("no token: pass --token, set GOFER_TOKEN, or run `gofer login --host … --token …`".into())
        })?;
        Ok(gofer_sdk::Client::new(host, token))
    }

    /// A client for routes that need no token (`POST /trial`).
    pub fn anonymous_client(&self) -> Result<gofer_sdk::Client, CliError> {
        Ok(gofer_sdk::Client::new(self.host()?, ""))
    }

    fn host(&self) -> Result<String, CliError> {
        let host = self.host.as_deref().ok_or_else(|| {
            CliError::Usage("no host: pass --host, set GOFER_HOST, or run `gofer login --host … --token …`".into())
        })?;
        base_url(host)
    }

    /// Writes host, token and namespace to the config file, readable by the user only.
    pub fn save(&self) -> Result<PathBuf, CliError> {
        let path = self.file.clone().ok_or_else(|| CliError::Usage("no config directory: pass --cli-config".into()))?;
        let host = self.host.as_deref().map(base_url).transpose()?;
        let saved = Saved { host, token: self.token.clone(), namespace: self.namespace.clone() };
        let io = |e: std::io::Error| CliError::Io(format!("writing {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(&saved).expect("settings serialize");
        write_private(&path, text.as_bytes()).map_err(io)?;
        Ok(path)
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The API's base URL from what the user gave: `127.0.0.1:8080` means `http://127.0.0.1:8080`;
/// anything that is not then an http(s) URL is refused, saying what would do.
pub(crate) fn base_url(host: &str) -> Result<String, CliError> {
    let url = if host.contains("://") { host.trim().to_owned() } else { format!("http://{}", host.trim()) };
    let refuse = |why: String| {
        CliError::Usage(format!(
            "host: `{host}` {why}; give it as http://HOST:PORT or https://HOST, e.g. http://127.0.0.1:8080"
        ))
    };
    let parsed = reqwest::Url::parse(&url).map_err(|e| refuse(format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refuse(format!("has the scheme {}, not http or https", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(refuse("names no host".into()));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod base_url_tests {
    use super::base_url;

    #[test]
    fn a_host_without_a_scheme_is_http_and_a_bad_one_is_refused_with_an_example() {
        assert_eq!(base_url("127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(base_url("https://gofer.example.com/").unwrap(), "https://gofer.example.com");
        assert_eq!(base_url("localhost:9000").unwrap(), "http://localhost:9000");
        for bad in ["ftp://x", "http://", "http://exa mple"] {
            let message = base_url(bad).unwrap_err().to_string();
            assert!(message.starts_with("host: `") && message.contains("http://127.0.0.1:8080"), "{bad}: {message}");
        }
    }
}
