//! Which registries images may come from. The client node's container daemon pulls the image
//! from the node's own network position, so a registry on a loopback, private, link-local or
//! metadata address would let a tenant make the node talk to the cluster's insides. By default
//! such registries are refused with the core egress policy; the operator's list
//! (`nomad.allowed_registries`) names what is allowed, `*` meaning any registry the policy accepts,
//! and a registry listed by name is allowed whatever its address.

use gofer_core::egress::{EgressDecision, EgressPolicy, parse_host};

/// In `nomad.allowed_registries`: any registry the egress policy accepts.
pub const ANY_PUBLIC: &str = "*";

/// Whether images may come from `registry` (`host[:port]`) under the operator's list; the
/// refusal names the registry and the reason.
pub(super) fn check(registry: &str, allowed: &[String]) -> Result<(), String> {
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(registry)) {
        return Ok(());
    }
    if !(allowed.is_empty() || allowed.iter().any(|a| a == ANY_PUBLIC)) {
        return Err(format!(
            "images from {registry} are not allowed here (allowed registries: {})",
            allowed.join(", ")
        ));
    }
    match refusal(registry) {
        None => Ok(()),
        Some(reason) => Err(format!(
            "images from {registry} are not allowed: {reason} (an operator may allow it by name in nomad.allowed_registries)"
        )),
    }
}

/// Why the egress policy refuses a registry's host, if it does. Names are not resolved here (the
/// node's daemon resolves them): only names that always designate a refused place are refused.
pub fn refusal(registry: &str) -> Option<String> {
    let host = host_of(registry);
    match parse_host(host) {
        Err(_) => Some(format!("its host {host:?} is neither a valid name nor an address")),
        Ok(parsed) => match EgressPolicy::default().decide_host(&parsed, &[]) {
            EgressDecision::Allow => None,
            EgressDecision::Refuse(class) => Some(format!("the registry is on {class}")),
        },
    }
}

/// `registry` without its port: `[::1]:5000` → `[::1]`, `10.0.0.5:5000` → `10.0.0.5`; an
/// unbracketed IPv6 address is kept whole.
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        registry.find(']').map_or(registry, |end| &registry[..=end])
    } else if registry.matches(':').count() == 1 {
        registry.split_once(':').map_or(registry, |(host, _port)| host)
    } else {
        registry
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::super::check_image;

    #[test]
    fn registries_on_loopback_private_and_link_local_addresses_are_refused_by_default() {
        let cases = [
            ("127.0.0.1:5000/x", "127.0.0.1:5000", "loopback"),
            ("localhost:5000/x", "localhost:5000", "loopback"),
            ("10.0.0.5/x", "10.0.0.5", "private"),
            ("[::1]:5000/x", "[::1]:5000", "loopback"),
            ("169.254.169.254/x", "169.254.169.254", "cloud metadata"),
            ("[::ffff:127.0.0.1]:5000/x", "[::ffff:127.0.0.1]:5000", "loopback"),
            ("[fe80::1]:5000/x", "[fe80::1]:5000", "link-local"),
            ("127.1:5000/x", "127.1:5000", "loopback"),
            ("2130706433:5000/x", "2130706433:5000", "loopback"),
            ("registry.localhost/x", "registry.localhost", "loopback"),
            ("metadata.google.internal/x", "metadata.google.internal", "cloud metadata"),
            ("192.168.1.2:443/team/app:1", "192.168.1.2:443", "private"),
            ("1.2.3.999:5000/x", "1.2.3.999:5000", "neither a valid name nor an address"),
        ];
        for list in [vec![], vec!["*".to_owned()]] {
            for (image, registry, reason) in cases {
                let refused = check_image(image, &list).unwrap_err();
                assert!(refused.contains(&format!("images from {registry} are not allowed")), "{image}: {refused}");
                assert!(refused.contains(reason), "{image}: {refused}");
            }
        }
    }

    #[test]
    fn public_registries_are_accepted() {
        for image in ["ghcr.io/x", "alpine:3", "library/alpine", "registry-1.docker.io/x:1", "203.0.113.5:5000/x"] {
            assert_eq!(check_image(image, &[]), Ok(()), "{image}");
            assert_eq!(check_image(image, &["*".to_owned()]), Ok(()), "{image}");
        }
    }

    #[test]
    fn an_operator_allows_a_private_registry_by_naming_it() {
        let allowed = vec!["*".to_owned(), "10.0.0.5:5000".to_owned(), "LOCALHOST:5000".to_owned()];
        assert_eq!(check_image("10.0.0.5:5000/team/app:1", &allowed), Ok(()));
        assert_eq!(check_image("localhost:5000/x", &allowed), Ok(()));
        assert_eq!(check_image("ghcr.io/x", &allowed), Ok(()), "* keeps every public registry");
        assert!(check_image("10.0.0.6:5000/x", &allowed).unwrap_err().contains("private"), "only the one named");
        // Without `*`, the list is exact, as before.
        let only = vec!["10.0.0.5:5000".to_owned()];
        assert_eq!(check_image("10.0.0.5:5000/x", &only), Ok(()));
        let refused = check_image("ghcr.io/x", &only).unwrap_err();
        assert!(refused.contains("images from ghcr.io are not allowed here (allowed registries: 10.0.0.5:5000)"));
    }
}
