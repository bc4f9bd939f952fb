//! The files every sandbox gets, written once at start-up into `<work_dir>/.sandbox/` (0700, the
//! server's own): the seccomp programs (`seccomp.rs`) and generated `/etc/passwd`, `/etc/group`
//! and `/etc/hosts`. The wrapper opens them as fds before it drops privileges, and bwrap copies the
//! `/etc` ones into the sandbox (`--ro-bind-data`), so the task's mount table names no host path.
//!
//! The rest of the task's `/etc` is the short list of host files that common tools resolve
//! through ([`HOST_ETC`]), bound read-only: not the host's whole `/etc`.

use std::ffi::OsString;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `/etc/passwd` inside: root, and the sandbox user (home `/job`).
const PASSWD: &str = "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/job:/usr/sbin/nologin\n";
/// `/etc/group` inside.
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";
/// `/etc/hosts` inside: the sandbox's own names only (the host's may name internal machines).
const HOSTS: &str = "127.0.0.1\tlocalhost gofer-sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Host `/etc` entries a task gets, read-only, when the host has them: name resolution, TLS
/// roots, the dynamic loader's cache, the time zone, `alternatives` (`awk`, `which` …), and the
/// configuration directories of language runtimes installed under `/usr`.
pub(crate) const HOST_ETC: &[&str] = &[
    "nsswitch.conf",
    "resolv.conf",
    "host.conf",
    "gai.conf",
    "protocols",
    "services",
    "networks",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "alternatives",
    "mime.types",
    "magic",
    "magic.mime",
    "locale.alias",
    "os-release",
    "debian_version",
    "inputrc",
    "perl",
];

/// Prefixes of runtime configuration directories (`python3.11`, `java-17-openjdk` …).
const HOST_ETC_PREFIXES: &[&str] = &["python3", "java-"];

/// Where the start-up files are.
#[derive(Debug, Clone, Default)]
pub(crate) struct SandboxFiles {
    pub deny: PathBuf,
    pub clone3: PathBuf,
    pub passwd: PathBuf,
    pub group: PathBuf,
    pub hosts: PathBuf,
    /// The [`HOST_ETC`] entries (and prefixed directories) this host has.
    pub host_etc: Vec<String>,
}

impl SandboxFiles {
    /// Writes the files into `dir` (created 0700) and lists the host's `/etc` entries to bind.
    pub(crate) fn write(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let (deny, clone3) = crate::seccomp::programs().map_err(std::io::Error::other)?;
        let files = Self {
            deny: dir.join("deny.bpf"),
            clone3: dir.join("clone3.bpf"),
            passwd: dir.join("passwd"),
            group: dir.join("group"),
            hosts: dir.join("hosts"),
            host_etc: host_etc_entries(Path::new("/etc")),
        };
        for (path, content) in [
            (&files.deny, deny.as_slice()),
            (&files.clone3, clone3.as_slice()),
            (&files.passwd, PASSWD.as_bytes()),
            (&files.group, GROUP.as_bytes()),
            (&files.hosts, HOSTS.as_bytes()),
        ] {
            write_private(path, content)?;
        }
        Ok(files)
    }

    /// The wrapper script's arguments after the info file, in the order it opens them as fds 5 to 9.
    pub(crate) fn wrapper_args(&self) -> [OsString; 5] {
        [&self.deny, &self.clone3, &self.passwd, &self.group, &self.hosts].map(|p| p.as_os_str().to_owned())
    }
}

/// Writes `content` to `path` (0600) through a rename, so a sandbox starting meanwhile never reads
/// half a file.
fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
    std::io::Write::write_all(&mut file, content)?;
    std::fs::rename(&tmp, path)
}

/// The entries of `etc` a task gets: [`HOST_ETC`] and directories with a [`HOST_ETC_PREFIXES`]
/// prefix, those that exist.
fn host_etc_entries(etc: &Path) -> Vec<String> {
    let mut entries: Vec<String> =
        HOST_ETC.iter().filter(|name| etc.join(name).exists()).map(|name| (*name).to_owned()).collect();
    if let Ok(dir) = std::fs::read_dir(etc) {
        let mut prefixed: Vec<String> = dir
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| HOST_ETC_PREFIXES.iter().any(|p| name.starts_with(p)))
            .collect();
        prefixed.sort();
        entries.extend(prefixed);
    }
    entries
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn only_listed_and_existing_etc_entries_are_bound() {
        let etc = tempfile::tempdir().unwrap();
        for dir in ["ssl", "python3.11", "java-17-openjdk", "shadow-dir", "pythonic"] {
            std::fs::create_dir(etc.path().join(dir)).unwrap();
        }
        for file in ["resolv.conf", "shadow", "passwd", "java-notes"] {
            std::fs::write(etc.path().join(file), "x").unwrap();
        }
        assert_eq!(host_etc_entries(etc.path()), ["resolv.conf", "ssl", "java-17-openjdk", "python3.11"]);
    }
}
