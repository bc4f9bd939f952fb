//! Networked tasks get a network of their own (issue 18, item 7): a public peer is reachable, the
//! host is not. There is no internet here, so "public" is a peer in a network namespace this test
//! makes, on a TEST-NET address (198.51.100.0/24), reached through a veth pair.
//!
//! Needs root (network namespaces, veth) and `slirp4netns`, `nft` and `ip`; says so and checks nothing
//! otherwise (CI runs as root with them installed by infra/deps.sh).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use gofer_core::scheduler::TaskObservation;

use crate::support::{scheduler_with, spec};

/// A network namespace with one peer address, removed when dropped.
struct Peer {
    netns: String,
    host_if: String,
    server: Option<std::process::Child>,
}

const PEER: &str = "198.51.100.2";
const PEER_PORT: u16 = 8081;

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).status().is_ok_and(|s| s.success())
}

impl Peer {
    fn start() -> Option<Peer> {
        let id = std::process::id() % 100_000;
        let netns = format!("gofer-peer-{id}");
        let (host_if, peer_if) = (format!("gpa{id}"), format!("gpb{id}"));
        let mut peer = Peer { netns: netns.clone(), host_if: host_if.clone(), server: None };
        let ok = ip(&["netns", "add", &netns])
            && ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &peer_if])
            && ip(&["link", "set", &peer_if, "netns", &netns])
            && ip(&["addr", "add", "198.51.100.1/24", "dev", &host_if])
            && ip(&["link", "set", &host_if, "up"])
            && ip(&["-n", &netns, "addr", "add", &format!("{PEER}/24"), "dev", &peer_if])
            && ip(&["-n", &netns, "link", "set", &peer_if, "up"])
            && ip(&["-n", &netns, "link", "set", "lo", "up"]);
        if !ok {
            return None;
        }
        // A peer that greets every connection, for at most 60 s.
        let script = format!(
            "import socket, time\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{PEER}', {PEER_PORT})); s.listen(8); s.settimeout(60)\nwhile True:\n    c, _ = s.accept(); c.sendall(b'peer-ok'); c.close()"
        );
        peer.server = Command::new("ip").args(["netns", "exec", &netns, "python3", "-c", &script]).spawn().ok();
        std::thread::sleep(Duration::from_millis(300));
        Some(peer)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
        ip(&["link", "del", &self.host_if]);
        ip(&["netns", "del", &self.netns]);
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn a_networked_task_reaches_a_public_peer_and_nothing_of_the_host() {
    let root = running_as_root();
    if !root || !["slirp4netns", "nft", "ip"].iter().all(|t| have(t)) {
        eprintln!(
            "a_networked_task_reaches_a_public_peer_and_nothing_of_the_host: skipped (needs root, slirp4netns, nft, ip)"
        );
        return;
    }
    let Some(_peer) = Peer::start() else {
        panic!("could not set up the peer's network namespace");
    };
    // A host service on every address (as Postgres, OpenBao or /metrics would be).
    let host_service = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host_service.local_addr().unwrap().port();
    host_service.set_nonblocking(true).unwrap();
    // After the peer exists, so the host's side of the veth counts among the host's addresses.
    let s = scheduler_with(|c| c.settings.share_network = true);
    let probe = format!(
        "import socket\n\
         def probe(host, port):\n    \
             try:\n        c = socket.create_connection((host, port), timeout=3); data = c.recv(16); c.close()\n        \
             return 'open ' + data.decode()\n    \
             except OSError as e:\n        return 'closed'\n\
         for host, port in [('{PEER}', {PEER_PORT}), ('127.0.0.1', {port}), ('192.0.2.2', {port}), ('198.51.100.1', {port}),\n\
                            ('10.0.0.1', 80), ('169.254.169.254', 80), ('::1', {port})]:\n    \
             print(host, probe(host, port), flush=True)"
    );
    let mut task = spec("networked", &["python3", "-c", &probe]);
    task.timeout = Duration::from_secs(30);
    let (observation, logs) = s.run(&task).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    let result = |host: &str| result_of(&logs, host);
    assert_eq!(result(PEER), format!("{PEER} open peer-ok"), "outbound to the world works: {logs}");
    for host in ["127.0.0.1", "192.0.2.2", "198.51.100.1", "10.0.0.1", "169.254.169.254", "::1"] {
        assert_eq!(result(host), format!("{host} closed"), "{host} must be unreachable: {logs}");
    }
    // And nothing reached the host's service.
    let mut buffer = [0_u8; 1];
    match host_service.accept() {
        Ok((mut stream, from)) => {
            let _ = stream.write_all(b"x");
            let _ = stream.read(&mut buffer);
            panic!("a sandboxed task reached the host's service from {from}");
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }

    // A task whose plan has no network gets loopback only, even with share_network.
    let mut offline = spec("offline", &["python3", "-c", &probe]);
    offline.allow_network = false;
    let (_, logs) = s.run(&offline).await;
    assert_eq!(result_of(&logs, PEER), format!("{PEER} closed"), "{logs}");
}

fn result_of(logs: &str, host: &str) -> String {
    logs.lines().find(|l| l.starts_with(&format!("{host} "))).unwrap_or("").to_owned()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|uids| uids.split_whitespace().next() == Some("0"))
}
