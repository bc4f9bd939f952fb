//! Tests of the egress address policy: every class in its IPv4, IPv6 and carried forms, the
//! allow-list, host names, and that [`refused_networks`] refuses exactly what [`classify`] does.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// The IPv4 address in each IPv6 form that carries it.
fn carried_forms(v4: Ipv4Addr) -> Vec<IpAddr> {
    let [a, b, c, d] = v4.octets();
    vec![
        IpAddr::V6(v4.to_ipv6_mapped()),
        ip(&format!("::{v4}")),
        ip(&format!("64:ff9b::{v4}")),
        ip(&format!("2002:{:02x}{:02x}:{:02x}{:02x}::1", a, b, c, d)),
    ]
}

#[test]
fn every_class_is_recognised_in_every_form() {
    use AddressClass::*;
    let v4_cases = [
        ("127.0.0.1", Loopback),
        ("127.255.0.9", Loopback),
        ("0.0.0.0", Unspecified),
        ("10.0.0.5", Private),
        ("172.16.3.4", Private),
        ("172.31.255.255", Private),
        ("192.168.1.1", Private),
        ("169.254.1.1", LinkLocal),
        ("169.254.169.254", CloudMetadata),
        ("100.100.100.200", CloudMetadata),
        ("168.63.129.16", CloudMetadata),
        ("100.64.0.1", SharedAddressSpace),
        ("100.127.255.254", SharedAddressSpace),
        ("224.0.0.1", Multicast),
        ("239.255.255.250", Multicast),
        ("255.255.255.255", Broadcast),
        ("240.0.0.1", Reserved),
        ("0.1.2.3", Reserved),
        ("192.0.0.170", Reserved),
        ("198.18.0.1", Reserved),
        ("8.8.8.8", Public),
        ("172.32.0.1", Public),
        ("100.128.0.1", Public),
    ];
    for (text, class) in v4_cases {
        let v4: Ipv4Addr = text.parse().unwrap();
        assert_eq!(classify(IpAddr::V4(v4), &[]), class, "{text}");
        for form in carried_forms(v4) {
            // `::0.0.0.0` is `::` itself: unspecified either way.
            assert_eq!(classify(form, &[]), class, "{text} as {form}");
        }
    }
    let v6_cases = [
        ("::1", Loopback),
        ("::", Unspecified),
        ("fc00::1", Private),
        ("fd12:3456::1", Private),
        ("fec0::1", Private),
        ("fe80::1", LinkLocal),
        ("febf::1", LinkLocal),
        ("fd00:ec2::254", CloudMetadata),
        ("ff02::1", Multicast),
        ("100::1", Reserved),
        ("2606:4700::1111", Public),
        ("2001:4860:4860::8888", Public),
    ];
    for (text, class) in v6_cases {
        assert_eq!(classify(ip(text), &[]), class, "{text}");
    }
}

#[test]
fn the_documentation_ranges_stand_for_the_internet() {
    for text in ["192.0.2.10", "198.51.100.7", "203.0.113.99", "2001:db8::1", "::ffff:203.0.113.5"] {
        assert_eq!(classify(ip(text), &[]), AddressClass::Public, "{text}");
        assert_eq!(EgressPolicy::default().decide(ip(text), &[]), EgressDecision::Allow, "{text}");
        assert!(!refused_networks().iter().any(|n| n.contains(&ip(text))), "{text}");
    }
}

#[test]
fn carried_ipv4_is_judged_as_ipv4() {
    assert_eq!(canonical(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
    assert_eq!(canonical(ip("::ffff:7f00:1")), ip("127.0.0.1"));
    assert_eq!(canonical(ip("::169.254.169.254")), ip("169.254.169.254"));
    assert_eq!(canonical(ip("64:ff9b::a00:1")), ip("10.0.0.1"));
    assert_eq!(canonical(ip("2002:c0a8:101::")), ip("192.168.1.1"));
    assert_eq!(canonical(ip("::1")), ip("::1"), "loopback stays itself");
    assert_eq!(canonical(ip("::")), ip("::"));
    assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
    assert_eq!(classify(ip("::ffff:8.8.8.8"), &[]), AddressClass::Public);
}

#[test]
fn the_hosts_own_addresses_are_refused_in_any_form() {
    let own = [ip("203.0.113.7"), ip("2001:db8::7"), ip("127.0.0.1")];
    assert_eq!(classify(ip("203.0.113.7"), &own), AddressClass::HostOwn);
    assert_eq!(classify(ip("::ffff:203.0.113.7"), &own), AddressClass::HostOwn);
    assert_eq!(classify(ip("2001:db8::7"), &own), AddressClass::HostOwn);
    assert_eq!(classify(ip("127.0.0.1"), &own), AddressClass::Loopback, "loopback says so");
    assert_eq!(classify(ip("203.0.113.8"), &own), AddressClass::Public);
    let decision = EgressPolicy::default().decide(ip("203.0.113.7"), &own);
    assert_eq!(decision, EgressDecision::Refuse(AddressClass::HostOwn));
}

#[test]
fn the_operators_allow_list_wins_over_the_refusals() {
    let policy = EgressPolicy { allow: vec![net("10.1.0.0/16"), net("fd00::/8"), net("203.0.113.7/32")] };
    let own = [ip("203.0.113.7")];
    assert_eq!(policy.decide(ip("10.1.2.3"), &own), EgressDecision::Allow);
    assert_eq!(policy.decide(ip("::ffff:10.1.2.3"), &own), EgressDecision::Allow, "in a carried form too");
    assert_eq!(policy.decide(ip("fd00:ec2::254"), &own), EgressDecision::Allow, "explicitly allowed");
    assert_eq!(policy.decide(ip("203.0.113.7"), &own), EgressDecision::Allow);
    assert_eq!(policy.decide(ip("10.2.0.1"), &own), EgressDecision::Refuse(AddressClass::Private));
    assert_eq!(policy.decide(ip("169.254.169.254"), &own), EgressDecision::Refuse(AddressClass::CloudMetadata));
    assert_eq!(policy.decide(ip("8.8.8.8"), &own), EgressDecision::Allow);
}

#[test]
fn refused_networks_hold_each_class_and_never_overlap() {
    let refused = refused_networks();
    for text in [
        "127.0.0.0/8",
        "0.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "168.63.129.16/32",
        "::1/128",
        "::/128",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
        "100::/64",
        "::ffff:127.0.0.0/104",
        "::ffff:169.254.0.0/112",
        "64:ff9b::a00:0/104",
        "2002:a00::/24",
    ] {
        let block = net(text);
        assert!(refused.iter().any(|n| n.contains(&block)), "{text} is not refused: {refused:?}");
    }
    for (i, a) in refused.iter().enumerate() {
        for b in &refused[i + 1..] {
            assert!(!a.contains(b) && !b.contains(a), "{a} and {b} overlap");
        }
    }
    assert!(refused.iter().any(|n| matches!(n, IpNet::V4(_))) && refused.iter().any(|n| matches!(n, IpNet::V6(_))));
}

#[test]
fn hosts_are_read_as_resolvers_read_them() {
    let address = |text: &str| Ok(Host::Address(ip(text)));
    assert_eq!(parse_host("127.0.0.1"), address("127.0.0.1"));
    assert_eq!(parse_host("127.1"), address("127.0.0.1"));
    assert_eq!(parse_host("2130706433"), address("127.0.0.1"));
    assert_eq!(parse_host("0x7f.0.0.1"), address("127.0.0.1"));
    assert_eq!(parse_host("0177.0.0.1"), address("127.0.0.1"));
    assert_eq!(parse_host("0X7F000001"), address("127.0.0.1"));
    assert_eq!(parse_host("10.0.0.5."), address("10.0.0.5"));
    assert_eq!(parse_host("[::1]"), address("::1"));
    assert_eq!(parse_host("::1"), address("::1"));
    assert_eq!(parse_host("[::ffff:127.0.0.1]"), address("::ffff:127.0.0.1"));
    assert_eq!(parse_host("[fe80::1%eth0]"), address("fe80::1"));
    assert_eq!(parse_host("LocalHost."), Ok(Host::Name("localhost".into())));
    assert_eq!(parse_host("ghcr.io"), Ok(Host::Name("ghcr.io".into())));
    assert_eq!(parse_host("registry-1.docker.io"), Ok(Host::Name("registry-1.docker.io".into())));
    for bad in ["1.2.3.999", "256.1.1.1", "08.0.0.1", "1.2.3.4.5", "[1.2.3.4]", "[::1", "a b", "", "-x.io", "a..b"] {
        assert!(parse_host(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn some_names_are_refused_whatever_they_resolve_to() {
    let policy = EgressPolicy::default();
    let decide = |text: &str| policy.decide_host(&parse_host(text).unwrap(), &[]);
    assert_eq!(decide("localhost"), EgressDecision::Refuse(AddressClass::Loopback));
    assert_eq!(decide("registry.localhost"), EgressDecision::Refuse(AddressClass::Loopback));
    assert_eq!(decide("metadata.google.internal"), EgressDecision::Refuse(AddressClass::CloudMetadata));
    assert_eq!(decide("[::1]"), EgressDecision::Refuse(AddressClass::Loopback));
    assert_eq!(decide("127.1"), EgressDecision::Refuse(AddressClass::Loopback));
    assert_eq!(decide("ghcr.io"), EgressDecision::Allow);
    assert_eq!(decide("notlocalhost.io"), EgressDecision::Allow);
    assert_eq!(AddressClass::CloudMetadata.to_string(), "a cloud metadata address");
}

fn any_ipv4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<u32>().prop_map(Ipv4Addr::from),
        // Near the edges of the refused blocks, where an off-by-one would hide.
        (
            prop::sample::select(vec![0u32, 10, 100, 127, 168, 169, 172, 192, 198, 223, 224, 239, 240, 255]),
            any::<u32>()
        )
            .prop_map(|(top, rest)| Ipv4Addr::from((top << 24) | (rest >> 8))),
    ]
}

proptest! {
    /// The firewall list and the decision agree on every address: the rules a generator emits
    /// from [`refused_networks`] refuse exactly what [`classify`] refuses.
    #[test]
    fn refused_networks_refuse_exactly_what_classify_refuses(v4 in any_ipv4(), v6 in any::<u128>(), which in 0usize..5) {
        let refused = refused_networks();
        let candidates: Vec<IpAddr> = std::iter::once(IpAddr::V4(v4))
            .chain(std::iter::once(IpAddr::V6(Ipv6Addr::from(v6))))
            .chain(carried_forms(v4).into_iter().skip(which % 4).take(1))
            .chain((which == 4).then(|| IpAddr::V6(Ipv6Addr::from((v6 & 0xffff_ffff_ffff) | (0xfe80u128 << 112)))))
            .collect();
        for address in candidates {
            let listed = refused.iter().any(|n| n.contains(&address));
            prop_assert_eq!(listed, !classify(address, &[]).is_public(), "{}", address);
        }
    }
}
