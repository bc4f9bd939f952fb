//! Networked tasks' own network: a task whose plan allows the network (and with
//! `sandbox.share_network`) keeps its own network namespace and reaches out through
//! **slirp4netns** (a user-mode TCP/IP stack, libslirp), while **nftables rules inside that
//! namespace** refuse every destination the egress policy refuses (`gofer_core::egress`):
//! loopback, the host's own addresses, private (RFC 1918), link-local, shared, multicast, reserved
//! and cloud metadata addresses. The host's resolvers are allowed for DNS only (port 53), and the
//! operator's `sandbox.egress_allow` networks are allowed whole. IPv4 only.
//!
//! The server (root) loads the rules (`nsenter --net … nft -f -`) and starts slirp4netns on the
//! namespace while bwrap still waits on its `--block-fd`, so the task never runs a moment
//! unfiltered; the task has no capabilities over the namespace to change them. slirp4netns joins
//! the namespace as root, then drops every capability, pivots into an empty mount namespace
//! (`--enable-sandbox`) and filters its own syscalls (`--enable-seccomp`). With
//! `--disable-host-loopback` its gateway (10.0.2.2) leads nowhere; for a task that holds a run
//! token (`kind: gofer`, `inject_api_token`) with the API on the host's loopback the gateway stays,
//! and the rules let through exactly one destination on it, the API's port (the task's
//! `GOFER_API_URL` names `10.0.2.2:<port>`).
//!
//! (pasta, the other suggestion, could not join a bwrap sandbox's network namespace here:
//! bwrap leaves its pid 1 in a second user namespace that does not own the network namespace.)

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ipnet::IpNet;
use rustix::process::Pid;
use tokio::io::AsyncWriteExt;

use crate::sandbox::HOST_PATH;

/// How long setting up a task's network may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// slirp4netns's gateway inside the namespace: the host's loopback when host loopback is allowed.
pub(crate) const GATEWAY: &str = "10.0.2.2";

/// The nftables script for a task's namespace: an output filter that accepts the namespace's own
/// loopback, the API's port on the gateway (`api_port`, `kind: gofer` tasks), DNS to the
/// resolvers, the allowed networks, and refuses the refused networks and the host's own
/// addresses (everything else, the internet, passes).
pub(crate) fn nft_ruleset(
    refused: &[IpNet],
    host_addresses: &[IpAddr],
    resolvers: &[IpAddr],
    allowed: &[IpNet],
    api_port: Option<u16>,
) -> String {
    let host: Vec<IpNet> = host_addresses.iter().map(|ip| IpNet::from(gofer_core::egress::canonical(*ip))).collect();
    let mut script = String::from("table inet gofer_egress {\n");
    let mut set = |name: &str, family: &str, nets: &mut dyn Iterator<Item = IpNet>| {
        let elements: BTreeSet<String> = nets.map(|n| n.trunc().to_string()).collect();
        let _ = write!(script, "  set {name} {{\n    type {family}\n    flags interval\n    auto-merge\n");
        if !elements.is_empty() {
            let _ = writeln!(script, "    elements = {{ {} }}", elements.into_iter().collect::<Vec<_>>().join(", "));
        }
        script.push_str("  }\n");
    };
    let v4 = |n: &IpNet| matches!(n, IpNet::V4(_));
    set("refused4", "ipv4_addr", &mut refused.iter().chain(&host).filter(|n| v4(n)).copied());
    set("refused6", "ipv6_addr", &mut refused.iter().chain(&host).filter(|n| !v4(n)).copied());
    set("allowed4", "ipv4_addr", &mut allowed.iter().filter(|n| v4(n)).copied());
    set("allowed6", "ipv6_addr", &mut allowed.iter().filter(|n| !v4(n)).copied());
    let dns: Vec<IpNet> = resolvers.iter().map(|ip| IpNet::from(gofer_core::egress::canonical(*ip))).collect();
    set("dns4", "ipv4_addr", &mut dns.iter().filter(|n| v4(n)).copied());
    set("dns6", "ipv6_addr", &mut dns.iter().filter(|n| !v4(n)).copied());
    script
        .push_str("  chain out {\n    type filter hook output priority 0; policy accept;\n    oifname \"lo\" accept\n");
    if let Some(port) = api_port {
        let _ = writeln!(script, "    ip daddr {GATEWAY} tcp dport {port} accept");
    }
    script.push_str(
        "\
         \x20   ip daddr @allowed4 accept\n    ip6 daddr @allowed6 accept\n\
         \x20   ip daddr @dns4 meta l4proto { tcp, udp } th dport 53 accept\n\
         \x20   ip6 daddr @dns6 meta l4proto { tcp, udp } th dport 53 accept\n\
         \x20   ip daddr @refused4 reject\n    ip6 daddr @refused6 reject\n  }\n}\n",
    );
    script
}

/// The nameservers of a `resolv.conf`.
pub(crate) fn resolvers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next().and_then(|ip| ip.parse().ok()))
        .collect()
}

/// The addresses of this host's interfaces, from `ip -j addr` (iproute2).
fn host_addresses(ip: &Path) -> Result<Vec<IpAddr>, String> {
    let output = std::process::Command::new(ip)
        .args(["-j", "addr", "show"])
        .env_clear()
        .env("PATH", HOST_PATH)
        .output()
        .map_err(|e| format!("running {}: {e}", ip.display()))?;
    let interfaces: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("reading `ip -j addr`: {e}"))?;
    Ok(interfaces
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().and_then(|s| s.parse().ok()))
        .collect())
}

/// What networked tasks need, found at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    slirp: PathBuf,
    nsenter: PathBuf,
    nft: PathBuf,
    refused: Vec<IpNet>,
    host: Vec<IpAddr>,
    resolvers: Vec<IpAddr>,
    allowed: Vec<IpNet>,
    /// The API's port on the host's loopback, reachable from `kind: gofer` tasks.
    api_port: Option<u16>,
}

fn find(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| HOST_PATH.into());
    std::env::split_paths(&path)
        .chain(std::env::split_paths(HOST_PATH))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not found"))
}

/// Waits until the sandbox has brought up its own loopback interface, which bwrap does in the
/// sandbox after the info fd has told us its pid. slirp4netns `--configure` brings `lo` up too,
/// and the kernel then gives it 127.0.0.1 by itself: had it come first, bwrap's own adding of
/// that address would fail (`bwrap: loopback: Failed RTM_NEWADDR`) and the task would never
/// start. The namespace's local routing table holds 127.0.0.1 exactly once `lo` is up with it.
/// Gives up quietly after a while: a late interface then fails the task with bwrap's message.
async fn wait_for_loopback(pid: &str) {
    let fib = format!("/proc/{pid}/net/fib_trie");
    let deadline = std::time::Instant::now() + LOOPBACK_WAIT;
    while std::time::Instant::now() < deadline {
        match tokio::fs::read_to_string(&fib).await {
            Ok(table) if table.contains("127.0.0.1") => return,
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
            // The sandbox is gone: setting up will say so.
            Err(_) => return,
        }
    }
    tracing::warn!(pid, "the sandbox's loopback interface did not come up in time");
}

/// How long [`wait_for_loopback`] waits (bwrap needs well under a millisecond).
const LOOPBACK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Network {
    /// Finds slirp4netns, nsenter, nft and ip, and reads this host's addresses and resolvers.
    pub(crate) fn prepare(allowed: &[IpNet], api_port: Option<u16>) -> Result<Self, String> {
        let slirp = find("slirp4netns").map_err(|e| format!("{e}: apt-get install -y slirp4netns"))?;
        let nft = find("nft").map_err(|e| format!("{e}: apt-get install -y nftables"))?;
        let nsenter = find("nsenter").map_err(|e| format!("{e}: apt-get install -y util-linux"))?;
        let ip = find("ip").map_err(|e| format!("{e}: apt-get install -y iproute2"))?;
        Ok(Self {
            slirp,
            nsenter,
            nft,
            refused: gofer_core::egress::refused_networks(),
            host: host_addresses(&ip)?,
            resolvers: resolvers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
            allowed: allowed.to_vec(),
            api_port,
        })
    }

    /// The API URL a networked task uses: an API on the host's loopback is the gateway's.
    pub(crate) fn api_url_for_task(&self, url: &str) -> Option<String> {
        let port = self.api_port?;
        ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .find_map(|host| url.strip_prefix(&format!("http://{host}:{port}")))
            .map(|rest| format!("http://{GATEWAY}:{port}{rest}"))
    }

    /// Gives the sandbox whose pid 1 is `init` its network: the rules first, then slirp4netns,
    /// which is answered (to be ended with the task). The sandbox is still waiting on its block
    /// fd, so the task has not started.
    pub(crate) async fn attach(&self, init: Pid, reach_api: bool) -> Result<tokio::process::Child, String> {
        let pid = init.as_raw_nonzero().to_string();
        let api_port = self.api_port.filter(|_| reach_api);
        tokio::time::timeout(SETUP_TIMEOUT, async {
            wait_for_loopback(&pid).await;
            let rules = nft_ruleset(&self.refused, &self.host, &self.resolvers, &self.allowed, api_port);
            self.load_rules(&pid, &rules).await?;
            self.start_slirp(&pid, api_port.is_some()).await
        })
        .await
        .map_err(|_| "setting up the task's network timed out".to_owned())?
    }

    async fn load_rules(&self, pid: &str, rules: &str) -> Result<(), String> {
        let mut child = tokio::process::Command::new(&self.nsenter)
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .arg("--")
            .arg(&self.nft)
            .args(["-f", "-"])
            .env_clear()
            .env("PATH", HOST_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("running nft: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(rules.as_bytes()).await.map_err(|e| format!("passing nft its rules: {e}"))?;
        }
        let output = child.wait_with_output().await.map_err(|e| format!("waiting for nft: {e}"))?;
        if !output.status.success() {
            return Err(format!("nft refused the egress rules: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(())
    }

    async fn start_slirp(&self, pid: &str, host_loopback: bool) -> Result<tokio::process::Child, String> {
        let mut command = tokio::process::Command::new(&self.slirp);
        command.args(["--configure", "--mtu=65520", "--enable-sandbox", "--enable-seccomp", "--ready-fd=1"]).args([
            "--netns-type=path",
            &format!("/proc/{pid}/ns/net"),
            "tap0",
        ]);
        if !host_loopback {
            command.arg("--disable-host-loopback");
        }
        let mut child = command
            .env_clear()
            .env("PATH", HOST_PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("running slirp4netns: {e}"))?;
        // It writes to its ready fd once the namespace's interface is configured.
        let mut ready = [0_u8; 1];
        let stdout = child.stdout.as_mut().ok_or("slirp4netns has no ready pipe")?;
        match tokio::io::AsyncReadExt::read(stdout, &mut ready).await {
            Ok(1) => Ok(child),
            _ => Err("slirp4netns ended before the network was ready".to_owned()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn the_rules_refuse_the_policy_and_the_host_and_allow_dns_and_the_allow_list() {
        let refused: Vec<IpNet> = ["10.0.0.0/8", "127.0.0.0/8", "fc00::/7"].map(|n| n.parse().unwrap()).to_vec();
        let host: Vec<IpAddr> = ["192.0.2.2", "fd00::2", "::ffff:198.51.100.7"].map(|a| a.parse().unwrap()).to_vec();
        let dns: Vec<IpAddr> = vec!["10.255.255.53".parse().unwrap()];
        let allowed: Vec<IpNet> = vec!["10.1.2.0/24".parse().unwrap()];
        let rules = nft_ruleset(&refused, &host, &dns, &allowed, Some(8080));
        assert!(rules.contains("elements = { 10.0.0.0/8, 127.0.0.0/8, 192.0.2.2/32, 198.51.100.7/32 }"), "{rules}");
        assert!(rules.contains("elements = { fc00::/7, fd00::2/128 }"), "{rules}");
        assert!(rules.contains("set dns4 {\n    type ipv4_addr\n    flags interval\n    auto-merge\n    elements = { 10.255.255.53/32 }"), "{rules}");
        assert!(rules.contains("elements = { 10.1.2.0/24 }"), "{rules}");
        // Order: loopback, the API's port on the gateway, allow-list, DNS, then refusals.
        let at = |needle: &str| rules.find(needle).unwrap();
        assert!(at("oifname \"lo\" accept") < at("ip daddr 10.0.2.2 tcp dport 8080 accept"));
        assert!(at("tcp dport 8080 accept") < at("@allowed4") && at("@allowed4") < at("@dns4 meta"));
        assert!(!nft_ruleset(&refused, &host, &dns, &allowed, None).contains("dport 8080"));
        assert!(at("@dns4 meta") < at("@refused4 reject"));
    }

    #[test]
    fn resolvers_are_read_from_resolv_conf() {
        let conf = "# comment\nnameserver 10.255.255.53\nsearch x\nnameserver fe80::1%eth0\nnameserver bogus\n";
        assert_eq!(resolvers(conf), ["10.255.255.53".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]);
    }
}
