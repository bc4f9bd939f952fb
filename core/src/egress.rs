//! The egress address policy: which destination addresses something a tenant controls may reach
//! (a networked task, the registry an image comes from, later a webhook). One decision over enums,
//! no IO: the caller resolves names and passes the host's own addresses.
//!
//! Refused by default: loopback, unspecified, private (RFC 1918, `fc00::/7`), link-local, cloud
//! metadata endpoints, shared address space (RFC 6598), multicast, broadcast, reserved ranges and
//! the host's own addresses. An IPv4 address written in an IPv6 form (`::ffff:127.0.0.1`,
//! `::127.0.0.1`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged as the IPv4 address it carries.
//! The documentation ranges (TEST-NET-1/2/3, `2001:db8::/32`) are deliberately not refused: tests
//! use them as "the internet". [`refused_networks`] lists exactly the refused blocks (except the
//! host's own addresses), for firewall rules.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// What kind of destination an address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `0.0.0.0`, `::` (reaches the local host on most stacks).
    Unspecified,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), unique local `fc00::/7`, site-local `fec0::/10`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Cloud metadata and host-agent endpoints: `169.254.169.254` (AWS, GCP, Azure, OCI, …),
    /// `fd00:ec2::254` (AWS IPv6), `100.100.100.200` (Alibaba), `168.63.129.16` (Azure WireServer).
    CloudMetadata,
    /// RFC 6598 carrier-grade NAT space, `100.64.0.0/10` (often a provider's internal network).
    SharedAddressSpace,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Not routable on the internet: `0.0.0.0/8`, `192.0.0.0/24`, `198.18.0.0/15`, `240.0.0.0/4`,
    /// `100::/64`.
    Reserved,
    /// One of the host's own addresses (as the caller listed them).
    HostOwn,
    /// Anything else: the internet.
    Public,
}

impl AddressClass {
    /// Whether the address is on the internet (the only class allowed by default).
    pub fn is_public(self) -> bool {
        self == AddressClass::Public
    }

    /// A short phrase for messages: "a loopback address".
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Loopback => "a loopback address",
            AddressClass::Unspecified => "the unspecified address",
            AddressClass::Private => "a private address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::CloudMetadata => "a cloud metadata address",
            AddressClass::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Broadcast => "the broadcast address",
            AddressClass::Reserved => "a reserved address",
            AddressClass::HostOwn => "one of the host's own addresses",
            AddressClass::Public => "a public address",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// What [`EgressPolicy::decide`] says about one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressDecision {
    /// It may be reached.
    Allow,
    /// It may not, because it is this kind of address.
    Refuse(AddressClass),
}

/// The policy: the fixed refusals, widened by an operator's allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Networks an operator allows although the fixed policy refuses them (an internal
    /// registry, a resolver). Checked first: an entry wins over every refusal.
    pub allow: Vec<IpNet>,
}

impl EgressPolicy {
    /// Whether `ip` may be reached from something a tenant controls on a host whose own
    /// addresses are `host_addresses`.
    pub fn decide(&self, ip: IpAddr, host_addresses: &[IpAddr]) -> EgressDecision {
        let carried = canonical(ip);
        if self.allow.iter().any(|net| net.contains(&ip) || net.contains(&carried)) {
            return EgressDecision::Allow;
        }
        match classify(ip, host_addresses) {
            AddressClass::Public => EgressDecision::Allow,
            class => EgressDecision::Refuse(class),
        }
    }

    /// [`decide`](Self::decide) for a parsed host: an address is judged as such; a name is
    /// refused only when it is one that always designates a refused place (`localhost`, the
    /// metadata names), since resolving it is the caller's job.
    pub fn decide_host(&self, host: &Host, host_addresses: &[IpAddr]) -> EgressDecision {
        match host {
            Host::Address(ip) => self.decide(*ip, host_addresses),
            Host::Name(name) => match name_class(name) {
                Some(class) => EgressDecision::Refuse(class),
                None => EgressDecision::Allow,
            },
        }
    }
}

/// The refused IPv4 blocks, most specific first (the first match names the class).
const V4: &[(Ipv4Net, AddressClass)] = &[
    (Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 169, 254), 32), AddressClass::CloudMetadata),
    (Ipv4Net::new_assert(Ipv4Addr::new(100, 100, 100, 200), 32), AddressClass::CloudMetadata),
    (Ipv4Net::new_assert(Ipv4Addr::new(168, 63, 129, 16), 32), AddressClass::CloudMetadata),
    (Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 32), AddressClass::Unspecified),
    (Ipv4Net::new_assert(Ipv4Addr::BROADCAST, 32), AddressClass::Broadcast),
    (Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8), AddressClass::Reserved),
    (Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8), AddressClass::Private),
    (Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10), AddressClass::SharedAddressSpace),
    (Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8), AddressClass::Loopback),
    (Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16), AddressClass::LinkLocal),
    (Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12), AddressClass::Private),
    (Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 0, 0), 24), AddressClass::Reserved),
    (Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16), AddressClass::Private),
    (Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15), AddressClass::Reserved),
    (Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4), AddressClass::Multicast),
    (Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4), AddressClass::Reserved),
];

/// The refused IPv6 blocks (IPv4 carried in IPv6 is judged as IPv4 first), most specific first.
const V6: &[(Ipv6Net, AddressClass)] = &[
    (Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 128), AddressClass::Unspecified),
    (Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128), AddressClass::Loopback),
    (Ipv6Net::new_assert(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), 128), AddressClass::CloudMetadata),
    (Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), AddressClass::LinkLocal),
    (Ipv6Net::new_assert(Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), AddressClass::Private),
    (Ipv6Net::new_assert(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), AddressClass::Private),
    (Ipv6Net::new_assert(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), AddressClass::Multicast),
    (Ipv6Net::new_assert(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), AddressClass::Reserved),
];

/// How IPv6 carries an IPv4 address: the prefix, whose next 32 bits are the IPv4 address.
const CARRIERS: &[Ipv6Net] = &[
    // IPv4-mapped `::ffff:a.b.c.d`.
    Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
    // IPv4-compatible `::a.b.c.d` (deprecated, still accepted by some stacks).
    Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 96),
    // NAT64 well-known prefix `64:ff9b::a.b.c.d` (RFC 6052): a NAT64 gateway forwards it.
    Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96),
    // 6to4 `2002:aabb:ccdd::/48` (RFC 3056): a relay forwards it.
    Ipv6Net::new_assert(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
];

/// How far the IPv4 bits after `carrier`'s prefix sit from the bottom of the address.
fn shift(carrier: &Ipv6Net) -> u32 {
    96 - u32::from(carrier.prefix_len())
}

/// The IPv4 address an IPv6 address carries, if it is one of the [`CARRIERS`] forms (`::` and
/// `::1` are themselves, not `0.0.0.0` and `0.0.0.1`).
fn carried_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if v6.is_unspecified() || v6.is_loopback() {
        return None;
    }
    let bits = u128::from(v6);
    CARRIERS.iter().find(|carrier| carrier.contains(&v6)).map(|carrier| {
        // The truncation keeps exactly the 32 bits after the prefix.
        Ipv4Addr::from((bits >> shift(carrier)) as u32)
    })
}

/// `ip` with an IPv4 address carried in IPv6 ([`CARRIERS`]) replaced by that IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => carried_ipv4(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn static_class(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => V4.iter().find(|(net, _)| net.contains(&v4)).map(|(_, class)| *class),
        IpAddr::V6(v6) => V6.iter().find(|(net, _)| net.contains(&v6)).map(|(_, class)| *class),
    }
    .unwrap_or(AddressClass::Public)
}

/// The class of `ip`, judged in its IPv4 form when it carries one, on a host whose own addresses
/// are `host_addresses`. Loopback and unspecified say so even when the host lists them; any
/// other address of the host is [`AddressClass::HostOwn`].
pub fn classify(ip: IpAddr, host_addresses: &[IpAddr]) -> AddressClass {
    let ip = canonical(ip);
    let class = static_class(ip);
    if matches!(class, AddressClass::Loopback | AddressClass::Unspecified) {
        return class;
    }
    if host_addresses.iter().any(|own| canonical(*own) == ip) {
        return AddressClass::HostOwn;
    }
    class
}

/// Every block [`classify`] refuses (without the host's own addresses, which the caller adds),
/// IPv4 and IPv6, including the IPv6 forms that carry a refused IPv4 address; aggregated, so no
/// two overlap (an nftables interval set takes them as they are).
pub fn refused_networks() -> Vec<IpNet> {
    let v4: Vec<IpNet> = V4.iter().map(|(net, _)| IpNet::V4(*net)).collect();
    let v4 = IpNet::aggregate(&v4);
    let mut all = v4.clone();
    all.extend(V6.iter().map(|(net, _)| IpNet::V6(*net)));
    for carrier in CARRIERS {
        for net in &v4 {
            let IpNet::V4(net) = net else { continue };
            let bits = u128::from(carrier.network()) | (u128::from(u32::from(net.network())) << shift(carrier));
            all.push(IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(bits), carrier.prefix_len() + net.prefix_len())));
        }
    }
    IpNet::aggregate(&all)
}

/// A host as written in a URL or an image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An address literal (any form a resolver would read as one: `127.1`, `0x7f000001`,
    /// `[::1]`).
    Address(IpAddr),
    /// A DNS name, lowercased, without a trailing dot.
    Name(String),
}

/// Why a host is neither an address nor a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an address nor a valid host name")]
pub struct HostError(pub String);

/// Reads a host (no port): bracketed or bare IPv6 (a zone id is dropped), IPv4 in every form
/// `inet_aton` and WHATWG URL parsers accept (`127.1`, `2130706433`, `0x7f.0.0.1`, `0177.0.0.1`),
/// else a DNS name. A host whose last label is numeric but is not a valid IPv4 address is an error,
/// as WHATWG parsers treat it: it must not pass as a name.
pub fn parse_host(raw: &str) -> Result<Host, HostError> {
    let error = || HostError(raw.to_owned());
    let host = raw.strip_prefix('[').map_or(Some(raw), |inner| inner.strip_suffix(']')).ok_or_else(error)?;
    if host.contains(':') {
        let address = host.split_once('%').map_or(host, |(address, _zone)| address);
        return address.parse::<Ipv6Addr>().map(|v6| Host::Address(IpAddr::V6(v6))).map_err(|_| error());
    }
    if raw.starts_with('[') {
        return Err(error());
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let last = name.rsplit('.').next().unwrap_or_default();
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last.strip_prefix("0x").is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit())));
    if numeric {
        return loose_ipv4(&name).map(|v4| Host::Address(IpAddr::V4(v4))).ok_or_else(error);
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() <= 253 && name.split('.').all(valid_label) { Ok(Host::Name(name)) } else { Err(error()) }
}

/// IPv4 as `inet_aton` reads it: one to four parts, each decimal, octal (leading `0`) or hex
/// (`0x`); the last part fills the remaining bytes.
fn loose_ipv4(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (*part, 10)
        };
        // `0x` alone is 0 for inet_aton; an empty part is not a number.
        let value = if digits.is_empty() && radix == 16 { 0 } else { u64::from_str_radix(digits, radix).ok()? };
        numbers.push(value);
    }
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|n| *n > 255) {
        return None;
    }
    let last_bits = 8 * (5 - numbers.len() as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let value = leading.iter().enumerate().fold(*last, |acc, (i, n)| acc | (n << (24 - 8 * i as u32)));
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// Names that always designate a refused place, whatever a resolver says: `localhost` and
/// `*.localhost` (RFC 6761), and the cloud metadata names.
pub fn name_class(name: &str) -> Option<AddressClass> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        Some(AddressClass::Loopback)
    } else if matches!(
        name.as_str(),
        "metadata" | "metadata.google.internal" | "instance-data" | "instance-data.ec2.internal"
    ) {
        Some(AddressClass::CloudMetadata)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
