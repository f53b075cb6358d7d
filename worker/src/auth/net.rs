//! Client addresses: who is calling behind trusted proxies, and whether a
//! token's `ip_restrictions` admit them.

use fleetgate_shared::config::Cidr;
use std::net::IpAddr;

/// The client's address. `X-Forwarded-For` is believed only when the peer is a
/// trusted proxy (`TRUSTED_PROXIES`); then the answer is the rightmost hop that
/// is not itself a trusted proxy. A hop that does not parse stops the walk at the
/// last trusted address (a spoofed left part cannot be blamed on the client).
///
/// Several `X-Forwarded-For` header lines must be joined with `,` in order.
pub fn client_ip(peer: IpAddr, x_forwarded_for: Option<&str>, trusted_proxies: &[Cidr]) -> IpAddr {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|c| c.contains(ip));
    let peer = peer.to_canonical();
    if !trusted(peer) {
        return peer;
    }
    let mut current = peer;
    for hop in x_forwarded_for
        .unwrap_or("")
        .rsplit(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let Some(ip) = parse_hop(hop) else {
            return current;
        };
        current = ip;
        if !trusted(ip) {
            return ip;
        }
    }
    current
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let host = match hop.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => hop.rsplit_once(':')?.0,
    };
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// A token's `ip_restrictions` against the client address: empty admits all;
/// otherwise an exact address or a CIDR must match. Entries that do not parse
/// match nothing (as in ContextForge); IPv4-mapped IPv6 counts as IPv4.
pub fn ip_allowed(restrictions: &[String], ip: IpAddr) -> bool {
    restrictions.is_empty()
        || restrictions
            .iter()
            .filter_map(|r| Cidr::parse(r).ok())
            .any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(items: &[&str]) -> Vec<Cidr> {
        items.iter().map(|s| Cidr::parse(s).unwrap()).collect()
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxies = nets(&["10.0.0.0/8", "::1"]);
        let xff = Some("203.0.113.9, 198.51.100.7, 10.0.0.2");
        // untrusted peer: the header is ignored
        assert_eq!(client_ip(ip("192.0.2.1"), xff, &proxies), ip("192.0.2.1"));
        // trusted peer: rightmost untrusted hop
        assert_eq!(client_ip(ip("10.0.0.1"), xff, &proxies), ip("198.51.100.7"));
        assert_eq!(
            client_ip(ip("::1"), Some("203.0.113.9"), &proxies),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), Some("203.0.113.9"), &proxies),
            ip("203.0.113.9")
        );
        // no header, or only proxies in it
        assert_eq!(client_ip(ip("10.0.0.1"), None, &proxies), ip("10.0.0.1"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(" , "), &proxies),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("10.0.0.3, 10.0.0.2"), &proxies),
            ip("10.0.0.3")
        );
        // garbage stops the walk at the last address we trust
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("203.0.113.9, junk"), &proxies),
            ip("10.0.0.1")
        );
        // ports and brackets
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("203.0.113.9:4711"), &proxies),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("[2001:db8::5]:443"), &proxies),
            ip("2001:db8::5")
        );
        // no proxies configured: always the peer
        assert_eq!(client_ip(ip("10.0.0.1"), xff, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn restrictions_exact_and_cidr() {
        let r: Vec<String> = ["10.1.0.0/16", "192.0.2.7", "2001:db8::/48", "bogus"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(ip_allowed(&[], ip("8.8.8.8")));
        assert!(ip_allowed(&r, ip("10.1.44.5")));
        assert!(ip_allowed(&r, ip("192.0.2.7")));
        assert!(ip_allowed(&r, ip("::ffff:192.0.2.7")));
        assert!(ip_allowed(&r, ip("2001:db8:0:1::9")));
        assert!(!ip_allowed(&r, ip("192.0.2.8")));
        assert!(!ip_allowed(&r, ip("10.2.0.1")));
        assert!(!ip_allowed(&r, ip("2001:db9::1")));
        assert!(!ip_allowed(&["bogus".to_string()], ip("10.1.0.1")));
    }
}
