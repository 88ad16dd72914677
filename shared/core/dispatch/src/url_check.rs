//! Webhook URLs that cannot be turned against the server's own network (SSRF): `https`
//! to a public host; plain `http` only to loopback, and only when the server is a local
//! development one. Checked when a subscription is created, and again on the resolved
//! addresses before every delivery.

use std::net::IpAddr;

/// Whether plain-`http` loopback targets are allowed (`agentwire dev`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    Public,
    PublicAndLoopback,
}

/// Why a webhook URL is refused.
pub fn check(raw: &str, targets: Targets) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("webhook.url is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("webhook.url must not carry credentials".into());
    }
    let host = url.host().ok_or("webhook.url has no host")?;
    let ip = match &host {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        url::Host::Domain(_) => None,
    };
    let loopback_name =
        matches!(&host, url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost"));
    let loopback = loopback_name || ip.is_some_and(|ip| ip.is_loopback());
    match url.scheme() {
        "http" if loopback && targets == Targets::PublicAndLoopback => Ok(url),
        "http" if loopback => Err(
            "http webhook URLs are allowed only for loopback under a local development server"
                .into(),
        ),
        "http" => Err("webhook.url must use https (http only for localhost in development)".into()),
        "https" if loopback && targets == Targets::PublicAndLoopback => Ok(url),
        "https" if loopback => Err("webhook.url must not target loopback".into()),
        "https" => match ip {
            Some(ip) if !public(ip) => Err(format!(
                "webhook.url must not target a private, link-local or local address ({ip})"
            )),
            _ => Ok(url),
        },
        other => Err(format!("webhook.url must use https, not {other}")),
    }
}

/// Whether an address is on the public internet: not private (RFC 1918, unique local),
/// loopback, link-local, unspecified, shared (CGNAT), documentation or multicast.
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            let first = segments[0];
            // NAT64 (64:ff9b::/96), 6to4 (2002::/16) and IPv4-compatible (::/96) addresses
            // carry an IPv4 one that may be private: refused whole.
            let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            let compatible = segments[..6] == [0; 6];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || nat64
                || compatible
                || first == 0x2002
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Whether a resolved address may be delivered to.
pub fn allowed(ip: IpAddr, targets: Targets) -> bool {
    public(ip) || (targets == Targets::PublicAndLoopback && ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_targets_are_refused() {
        let dev = Targets::PublicAndLoopback;
        let prod = Targets::Public;
        for bad in [
            "http://10.0.0.1/hook",
            "https://10.0.0.1/hook",
            "https://192.168.1.4/",
            "https://172.20.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:a00:1::]/",
            "https://198.18.0.1/",
            "https://240.0.0.1/",
            "https://100.64.0.1/",
            "http://example.com/hook",
            "ftp://example.com/",
            "https://user:pw@example.com/",
        ] {
            assert!(check(bad, dev).is_err(), "{bad}");
            assert!(check(bad, prod).is_err(), "{bad}");
        }
        for dev_only in [
            "http://127.0.0.1:9999/hook",
            "http://localhost:3000/h",
            "http://[::1]:80/",
        ] {
            assert!(check(dev_only, dev).is_ok(), "{dev_only}");
            assert!(check(dev_only, prod).is_err(), "{dev_only}");
        }
        assert!(check("https://hooks.example.com/agent", prod).is_ok());
        assert!(check("https://8.8.8.8/", prod).is_ok());
        assert!(!allowed("10.1.2.3".parse().unwrap(), dev));
        assert!(allowed("127.0.0.1".parse().unwrap(), dev));
        assert!(!allowed("127.0.0.1".parse().unwrap(), prod));
    }
}
