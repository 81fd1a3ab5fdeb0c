//! The client's address behind proxies, for the audit log and login throttling.
//!
//! `X-Forwarded-For` is anyone's to write, so it counts only when the peer is a configured
//! trusted proxy, and then only the part trusted proxies appended: walking from the right,
//! each entry was added by the hop after it, so the first address that is not a trusted
//! proxy is the client. With no trusted proxy configured, the peer address is the client.

use crate::http::headers::X_FORWARDED_FOR;
use http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// An IP network: an address and how many of its leading bits count (`10.0.0.0/8`; a bare
/// address is a network of one, `/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u32,
}

impl Net {
    /// `addr` or `addr/prefix`, IPv4 or IPv6; bits past the prefix are ignored.
    fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|n| *n <= max)?
            }
            Some(_) => return None,
        };
        Some(Self { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix).unwrap_or(0);
                (u32::from(net) ^ u32::from(ip)) & mask == 0
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix).unwrap_or(0);
                (u128::from(net) ^ u128::from(ip)) & mask == 0
            }
            _ => false,
        }
    }
}

/// Proxies whose `X-Forwarded-For` is believed (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Net>);

impl TrustedProxies {
    /// Parses IP addresses and CIDR ranges (`10.0.0.0/8`, `::1`), surrounding blanks and
    /// empty entries ignored. `Err` is the first entry that is neither.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        entries
            .into_iter()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| Net::parse(e).ok_or_else(|| e.to_owned()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // An entry that is no address was not written by a proxy we trust: stop at
            // the last hop we could vouch for.
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("header value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let none = TrustedProxies::default();
        let proxies = TrustedProxies::parse(["10.0.0.0/8", " 192.168.1.7 ", "::1"]).expect("parse");
        let spoofed = headers(&["203.0.113.9"]);
        // No proxy configured, or a peer that is not one: the header is ignored.
        assert_eq!(
            none.client(ip("198.51.100.1"), &spoofed),
            ip("198.51.100.1")
        );
        assert_eq!(
            proxies.client(ip("198.51.100.1"), &spoofed),
            ip("198.51.100.1")
        );
        // Behind a trusted proxy: the right-most address that is not a trusted proxy.
        let chain = headers(&["6.6.6.6, 203.0.113.9", "10.1.2.3"]);
        assert_eq!(proxies.client(ip("192.168.1.7"), &chain), ip("203.0.113.9"));
        // Everything trusted: the left-most hop.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &headers(&["10.9.9.9, 10.0.0.2"])),
            ip("10.9.9.9")
        );
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // Garbage stops the walk at the last address a trusted proxy wrote.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &headers(&["203.0.113.9, bogus, 10.0.0.2"])),
            ip("10.0.0.2")
        );
        // Ports and IPv6, and an IPv4 peer seen through an IPv6 socket.
        assert_eq!(
            proxies.client(ip("::1"), &headers(&["[2001:db8::5]:4711"])),
            ip("2001:db8::5")
        );
        assert_eq!(
            proxies.client(ip("::ffff:10.0.0.1"), &headers(&["203.0.113.9:80"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn networks_parse_and_match_by_prefix() {
        let n = |s: &str| Net::parse(s).expect(s);
        assert!(n("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!n("10.0.0.0/8").contains(ip("11.0.0.1")));
        // Host bits past the prefix do not matter.
        assert!(n("10.1.2.3/8").contains(ip("10.9.9.9")));
        assert!(n("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!n("0.0.0.0/0").contains(ip("::1")));
        assert!(n("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(!n("192.168.1.7").contains(ip("192.168.1.8")));
        assert!(n("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!n("2001:db8::/32").contains(ip("2001:db9::5")));
        assert!(n("::/0").contains(ip("2001:db8::5")));
        assert!(n("::1/128").contains(ip("::1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "proxy.example",
            "10.0.0",
            "",
        ] {
            assert_eq!(Net::parse(bad), None, "{bad}");
        }
        assert_eq!(
            TrustedProxies::parse(["10.0.0.0/8", "proxy.example"]),
            Err("proxy.example".to_owned())
        );
        assert!(TrustedProxies::parse([" ", ""]).expect("blank").is_empty());
    }
}
