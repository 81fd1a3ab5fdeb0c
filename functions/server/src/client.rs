//! The client's address, for the audit log and login throttling.
//!
//! `X-Forwarded-For` is anyone's to write, so it counts only when the peer is a configured
//! trusted proxy, and then only the part trusted proxies appended: walking from the right,
//! each entry was added by the hop after it, so the first address that is not a trusted
//! proxy is the client. With no trusted proxy configured, the peer address is the client.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses IP addresses and CIDR ranges (`10.0.0.0/8`, `::1`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("trusted proxy {e:?} is neither an IP address nor a CIDR range")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
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
        let proxies =
            TrustedProxies::parse(&["10.0.0.0/8".into(), " 192.168.1.7 ".into(), "::1".into()])
                .expect("parse");
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
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example".into()]).is_err());
    }
}
