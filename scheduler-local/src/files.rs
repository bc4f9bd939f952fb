//! The files every sandbox gets, made once at start-up: the seccomp programs (`seccomp.rs`), in
//! `<work_dir>/.sandbox/` (0700, the server's own; the wrapper opens them as fds before it drops
//! privileges), and the task's whole `/etc`, staged as one directory that bwrap binds read-only.
//!
//! That `/etc` holds generated `passwd`, `group` and `hosts` and copies of the short list of host
//! files common tools resolve through ([`HOST_ETC`]): not the host's whole `/etc`. It is staged in
//! `/run/gofer-sandbox/etc-<key>` (as root; the work directory otherwise), keyed by its content, so
//! servers with the same content share it, a changed host file gets a new one, and the task's
//! mount table names no state directory. One bind instead of one per file keeps the sandbox's
//! start fast. `resolv.conf` alone is bound from the host, so a resolver change reaches new tasks.

use std::ffi::OsString;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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
    /// The staged `/etc`.
    pub etc: PathBuf,
}

impl SandboxFiles {
    /// Writes the seccomp programs into `private` (created 0700) and stages the task's `/etc` under
    /// `shared` (see the module docs).
    pub(crate) fn write(private: &Path, shared: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(private)?;
        std::fs::set_permissions(private, std::fs::Permissions::from_mode(0o700))?;
        let (deny, clone3) = crate::seccomp::programs().map_err(std::io::Error::other)?;
        let files = Self {
            deny: private.join("deny.bpf"),
            clone3: private.join("clone3.bpf"),
            etc: stage_etc(Path::new("/etc"), shared)?,
        };
        write_private(&files.deny, &deny)?;
        write_private(&files.clone3, &clone3)?;
        Ok(files)
    }

    /// The wrapper script's arguments after the info file, in the order it opens them as fds 5 and 6.
    pub(crate) fn wrapper_args(&self) -> [OsString; 2] {
        [&self.deny, &self.clone3].map(|p| p.as_os_str().to_owned())
    }
}

/// One entry of the staged `/etc`.
enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

/// Collects `host_etc`'s listed entries (recursively) and the generated files, as (relative path,
/// entry) in a stable order.
fn etc_entries(host_etc: &Path) -> std::io::Result<Vec<(PathBuf, Entry)>> {
    let mut entries = vec![
        (PathBuf::from("passwd"), Entry::File(PASSWD.into())),
        (PathBuf::from("group"), Entry::File(GROUP.into())),
        (PathBuf::from("hosts"), Entry::File(HOSTS.into())),
        // Where the host's live resolv.conf is bound (a read-only /etc cannot grow a mount point).
        (PathBuf::from("resolv.conf"), Entry::File(Vec::new())),
    ];
    let mut stack: Vec<PathBuf> = host_etc_entries(host_etc).into_iter().rev().map(PathBuf::from).collect();
    while let Some(relative) = stack.pop() {
        let path = host_etc.join(&relative);
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            entries.push((relative, Entry::Link(std::fs::read_link(&path)?)));
        } else if meta.is_dir() {
            let mut children: Vec<PathBuf> =
                std::fs::read_dir(&path)?.flatten().map(|e| relative.join(e.file_name())).collect();
            children.sort();
            stack.extend(children.into_iter().rev());
            entries.push((relative, Entry::Dir));
        } else if meta.is_file() && meta.permissions().mode() & 0o004 != 0 {
            // World-readable files only: nothing the host keeps from its other users.
            entries.push((relative, Entry::File(std::fs::read(&path)?)));
        }
    }
    Ok(entries)
}

/// A name part no other staging in flight uses, in this process or another: schedulers of one
/// process (tests make many at once) must not build in each other's temporary directory.
pub(crate) fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Stages the task's `/etc` under `base` and answers its directory.
fn stage_etc(host_etc: &Path, base: &Path) -> std::io::Result<PathBuf> {
    let entries = etc_entries(host_etc)?;
    let mut hash = Sha256::new();
    for (path, entry) in &entries {
        hash.update(path.as_os_str().as_encoded_bytes());
        match entry {
            Entry::Dir => hash.update(b"\0dir\0"),
            Entry::File(bytes) => {
                hash.update(b"\0file\0");
                hash.update((bytes.len() as u64).to_le_bytes());
                hash.update(bytes);
            }
            Entry::Link(target) => {
                hash.update(b"\0link\0");
                hash.update(target.as_os_str().as_encoded_bytes());
            }
        }
    }
    let key = &hex::encode(hash.finalize())[..16];
    std::fs::create_dir_all(base)?;
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755))?;
    let staged = base.join(format!("etc-{key}"));
    if staged.is_dir() {
        return Ok(staged);
    }
    // Built under a private name, then renamed: a concurrent server never binds half of it.
    let tmp = base.join(format!(".etc-{key}.{}", unique_suffix()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp)?;
    for (path, entry) in &entries {
        let target = tmp.join(path);
        match entry {
            Entry::Dir => std::fs::create_dir(&target)?,
            Entry::File(bytes) => std::fs::write(&target, bytes)?,
            Entry::Link(link) => std::os::unix::fs::symlink(link, &target)?,
        }
        if !matches!(entry, Entry::Link(_)) {
            let mode = if matches!(entry, Entry::Dir) { 0o755 } else { 0o644 };
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
        }
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    match std::fs::rename(&tmp, &staged) {
        Ok(()) => Ok(staged),
        // Another server staged the same content first.
        Err(_) if staged.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(staged)
        }
        Err(e) => Err(e),
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
        assert_eq!(host_etc_entries(etc.path()), ["ssl", "java-17-openjdk", "python3.11"]);
    }

    #[test]
    fn the_staged_etc_holds_the_generated_files_and_copies_keyed_by_content() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::create_dir(etc.path().join("ssl")).unwrap();
        std::fs::write(etc.path().join("ssl").join("cert.pem"), "pem").unwrap();
        std::os::unix::fs::symlink("/usr/share/zoneinfo/UTC", etc.path().join("localtime")).unwrap();
        std::fs::write(etc.path().join("shadow"), "secret").unwrap();
        let base = tempfile::tempdir().unwrap();
        let staged = stage_etc(etc.path(), base.path()).unwrap();
        assert_eq!(std::fs::read_to_string(staged.join("ssl/cert.pem")).unwrap(), "pem");
        assert_eq!(std::fs::read_link(staged.join("localtime")).unwrap(), Path::new("/usr/share/zoneinfo/UTC"));
        assert!(std::fs::read_to_string(staged.join("passwd")).unwrap().contains("nobody:x:65534"));
        assert!(!staged.join("shadow").exists());
        // The same content is the same directory; a change makes another.
        assert_eq!(stage_etc(etc.path(), base.path()).unwrap(), staged);
        std::fs::write(etc.path().join("ssl").join("cert.pem"), "new").unwrap();
        assert_ne!(stage_etc(etc.path(), base.path()).unwrap(), staged);
    }
}
