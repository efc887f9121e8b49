//! Egress policy: which addresses the server may call on a user's behalf (`http` tasks
//! and webhook deliveries, through [`guarded_client`]). Server-side request forgery is the threat: a task
//! aimed at `169.254.169.254` reads cloud credentials, one aimed at `10.0.0.5:5432`
//! probes the private network. So by default every address that is not plainly public
//! is denied — loopback, link-local (the metadata address among them), private,
//! unique-local, carrier-grade NAT, multicast, reserved, and IPv6 forms that embed an
//! IPv4 address — and an operator opens what it needs with an allowlist
//! (`CONFLUX_EGRESS_ALLOW`: CIDRs and host patterns).
//!
//! Addresses are checked where the connection is made: the HTTP client resolves names
//! through [`GuardedResolver`], which refuses a name with any denied address (no DNS
//! rebinding between a check and the connect), and an IP-literal URL — in any spelling
//! the URL parser accepts: decimal, hex, octal, IPv4-mapped IPv6 — is checked before
//! the request is built. Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Ranges denied unless allowed, with the name a denial gives.
const DENIED_V4: [(&str, &str); 12] = [
    ("0.0.0.0/8", "the unspecified/this-network range"),
    ("10.0.0.0/8", "a private range"),
    ("100.64.0.0/10", "the carrier-grade NAT range"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "a private range"),
    ("192.0.0.0/24", "the IETF protocol range"),
    ("192.168.0.0/16", "a private range"),
    ("198.18.0.0/15", "the benchmarking range"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "a reserved range"),
    ("255.255.255.255/32", "broadcast"),
];
const DENIED_V6: [(&str, &str); 5] = [
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("fc00::/7", "a unique-local range"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// Why a call was refused. Its text starts with `egress_denied` and names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress_denied: {target} is {rule}; outbound calls there are not allowed (an operator allows them with CONFLUX_EGRESS_ALLOW)")]
pub struct EgressDenied {
    /// What was called (an address, or a name and the address it resolved to).
    pub target: String,
    /// The rule that denies it (`loopback`, `a private range 10.0.0.0/8`, …).
    pub rule: String,
}

/// A host pattern of the allowlist: `name` or `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            HostPattern::Exact(name) => host == *name,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
        }
    }
}

/// Ranges a name from a tenant's own allowlist may resolve into: the private ones. A
/// tenant usually controls the DNS of the names it lists, so a name never opens
/// loopback, link-local (cloud metadata) or the other special ranges.
const PRIVATE: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

/// What the server may call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allowed_nets: Vec<IpNet>,
    allowed_hosts: Vec<HostPattern>,
    /// Names from a tenant's own allowlist: allowed when they resolve to public or
    /// private addresses only.
    tenant_hosts: Vec<HostPattern>,
    allow_all: bool,
}

impl EgressPolicy {
    /// The default: only public addresses.
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Public addresses and loopback (development, tests).
    pub fn allowing_loopback() -> Self {
        Self::parse("127.0.0.0/8,::1/128").unwrap_or_default()
    }

    /// Parses an allowlist: comma-separated CIDRs (`10.1.0.0/16`), addresses
    /// (`10.1.2.3`), host names (`billing.internal`), suffix patterns
    /// (`*.svc.cluster.local`), or `*` (everything: no protection). Empty: public only.
    pub fn parse(allow: &str) -> Result<Self, String> {
        let mut policy = Self::default();
        for item in allow.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                policy.allow_all = true;
            } else if let Ok(net) = item.parse::<IpNet>() {
                policy.allowed_nets.push(net);
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                policy.allowed_nets.push(IpNet::from(ip));
            } else if let Some(suffix) = item.strip_prefix("*.") {
                policy.allowed_hosts.push(HostPattern::Suffix(format!(
                    ".{}",
                    valid_host(suffix, item)?
                )));
            } else {
                policy
                    .allowed_hosts
                    .push(HostPattern::Exact(valid_host(item, item)?));
            }
        }
        Ok(policy)
    }

    /// Parses a tenant's own allowlist (set by the system administrator): CIDRs and
    /// addresses open what they name; host names and `*.suffix` patterns open private
    /// addresses behind those names, never loopback, link-local or other special
    /// ranges (the tenant may control their DNS); `*` is refused.
    pub fn parse_tenant(allow: &str) -> Result<Self, String> {
        let mut policy = Self::parse(allow)?;
        if policy.allow_all {
            return Err("`*` is for the operator's CONFLUX_EGRESS_ALLOW only".into());
        }
        policy.tenant_hosts = std::mem::take(&mut policy.allowed_hosts);
        Ok(policy)
    }

    /// What either policy allows: the operator's allowlist plus a tenant's own.
    pub fn union(&self, other: &EgressPolicy) -> EgressPolicy {
        let mut out = self.clone();
        out.allow_all |= other.allow_all;
        out.allowed_nets.extend(other.allowed_nets.iter().copied());
        out.allowed_hosts
            .extend(other.allowed_hosts.iter().cloned());
        out.tenant_hosts.extend(other.tenant_hosts.iter().cloned());
        out
    }

    /// Refuses `ip`, an address the name `host` resolved to: [`EgressPolicy::check_ip`],
    /// except that a name of a tenant's allowlist may resolve to a private address.
    pub fn check_resolved(&self, host: &str, ip: IpAddr) -> Result<(), EgressDenied> {
        let denied = match self.check_ip(ip) {
            Ok(()) => return Ok(()),
            Err(denied) => denied,
        };
        let ip4 = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let private = PRIVATE
            .iter()
            .filter_map(|c| c.parse::<IpNet>().ok())
            .any(|n| n.contains(&ip4));
        if private && self.tenant_hosts.iter().any(|p| p.matches(host)) {
            return Ok(());
        }
        Err(denied)
    }

    /// Whether the name `host` is allowed whatever it resolves to.
    pub fn allows_host(&self, host: &str) -> bool {
        self.allow_all || self.allowed_hosts.iter().any(|p| p.matches(host))
    }

    /// Refuses `ip` unless it is public or allowed. An IPv4 address embedded in an IPv6
    /// one (mapped, NAT64) is judged as that IPv4 address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), EgressDenied> {
        if self.allow_all || self.allowed_nets.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        if let IpAddr::V6(v6) = ip {
            if let Some(v4) = embedded_v4(v6) {
                return self
                    .check_ip(IpAddr::V4(v4))
                    .map_err(|denied| EgressDenied {
                        target: ip.to_string(),
                        rule: denied.rule,
                    });
            }
        }
        match denied_rule(ip) {
            Some(rule) => Err(EgressDenied {
                target: ip.to_string(),
                rule,
            }),
            None => Ok(()),
        }
    }

    /// Refuses a URL host that is denied without resolving anything: an IP literal (in
    /// any form the URL parser accepts) or a `localhost` name. Other names are checked
    /// when they are resolved.
    pub fn check_url_host(&self, host: &url::Host<&str>) -> Result<(), EgressDenied> {
        match host {
            url::Host::Ipv4(v4) => self.check_ip(IpAddr::V4(*v4)),
            url::Host::Ipv6(v6) => self.check_ip(IpAddr::V6(*v6)),
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if self.allows_host(&name) {
                    return Ok(());
                }
                if name == "localhost" || name.ends_with(".localhost") {
                    return self
                        .check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
                        .map_err(|denied| EgressDenied {
                            target: name,
                            rule: denied.rule,
                        });
                }
                Ok(())
            }
        }
    }
}

fn valid_host(host: &str, item: &str) -> Result<String, String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(host)
    } else {
        Err(format!(
            "`{item}` is neither a CIDR, an address, a host name nor a `*.suffix` pattern"
        ))
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible or NAT64
/// (`64:ff9b::a.b.c.d`) IPv6 address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0);
    let compatible = s[..6].iter().all(|x| *x == 0) && !v6.is_loopback() && !v6.is_unspecified();
    (nat64 || compatible).then_some(tail)
}

fn denied_rule(ip: IpAddr) -> Option<String> {
    let table: &[(&str, &str)] = match ip {
        IpAddr::V4(_) => &DENIED_V4,
        IpAddr::V6(_) => &DENIED_V6,
    };
    table.iter().find_map(|(cidr, name)| {
        let net: IpNet = cidr.parse().ok()?;
        net.contains(&ip).then(|| format!("in {name} ({cidr})"))
    })
}

/// Where a tenant's own allowlist comes from (the system administrator's policy for
/// it, `TenantPolicySet`); what it allows is added to the operator's.
pub trait TenantAllowlists: Send + Sync {
    /// `tenant`'s own allowlist, if it has one. The same `Arc` while it is unchanged.
    fn allowlist(&self, tenant: &str) -> Option<Arc<EgressPolicy>>;
}

/// The HTTP client's resolver: resolves with the system's resolver, then refuses a name
/// any of whose addresses the policy denies (unless the name itself is allowed).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !policy.allows_host(&host) {
                for addr in &addrs {
                    if let Err(denied) = policy.check_resolved(&host, addr.ip()) {
                        let denied = EgressDenied {
                            target: format!("{host} (resolves to {})", addr.ip()),
                            rule: denied.rule,
                        };
                        return Err(Box::new(denied) as Box<dyn std::error::Error + Send + Sync>);
                    }
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An HTTP client that calls only what `policy` allows: names are resolved through
/// [`GuardedResolver`] (every resolved address checked at connect time), redirects are
/// never followed. `http` tasks and webhook deliveries use it.
pub fn guarded_client(
    policy: Arc<EgressPolicy>,
    user_agent: &str,
) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
        .user_agent(user_agent.to_owned())
        .build()
        .map_err(|e| format!("the HTTP client could not be built: {e}"))
}

/// The egress denial somewhere in `error`'s chain of sources, if any.
pub fn denial_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressDenied> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(denied) = e.downcast_ref::<EgressDenied>() {
            return Some(denied);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(url: &str) -> Result<(), EgressDenied> {
        let url = url::Url::parse(url).expect("url");
        EgressPolicy::public_only().check_url_host(&url.host().expect("host"))
    }

    #[test]
    fn the_ssrf_corpus_is_denied() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0xA9FEA9FE/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://127.0.0.1:5432/",
            "http://127.1/",
            "http://0/",
            "http://0.0.0.0/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://[::1]/",
            "http://[::]/",
            "http://10.0.0.5:5432/",
            "http://172.16.3.4/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://224.0.0.1/",
        ] {
            let denied = host_of(url).expect_err(url);
            assert!(
                denied.to_string().starts_with("egress_denied: "),
                "{denied}"
            );
        }
        for url in [
            "http://93.184.216.34/",
            "http://[2606:4700::1111]/",
            "http://example.com/",
        ] {
            assert_eq!(host_of(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn denials_name_their_rule() {
        let denied = host_of("http://169.254.169.254/").expect_err("metadata");
        assert!(denied.rule.contains("link-local") && denied.rule.contains("169.254.0.0/16"));
        let denied = host_of("http://[::ffff:10.1.2.3]/").expect_err("mapped");
        assert_eq!(denied.target, "::ffff:10.1.2.3");
        assert!(denied.rule.contains("10.0.0.0/8"), "{}", denied.rule);
    }

    #[test]
    fn the_allowlist_opens_what_it_names() {
        let policy = EgressPolicy::parse(" 10.1.0.0/16, 127.0.0.1 ,*.svc.local, billing.internal")
            .expect("parse");
        assert_eq!(policy.check_ip("10.1.2.3".parse().unwrap()), Ok(()));
        assert!(policy.check_ip("10.2.0.1".parse().unwrap()).is_err());
        assert_eq!(policy.check_ip("127.0.0.1".parse().unwrap()), Ok(()));
        assert!(policy.check_ip("127.0.0.2".parse().unwrap()).is_err());
        assert_eq!(policy.check_ip("::ffff:127.0.0.1".parse().unwrap()), Ok(()));
        assert!(policy.allows_host("db.svc.local") && policy.allows_host("BILLING.internal."));
        assert!(!policy.allows_host("svc.local.evil.com"));
        assert!(EgressPolicy::parse("not a host!").is_err());
        let open = EgressPolicy::parse("*").expect("parse");
        assert_eq!(open.check_ip("169.254.169.254".parse().unwrap()), Ok(()));
        let dev = EgressPolicy::allowing_loopback();
        assert_eq!(dev.check_ip("::1".parse().unwrap()), Ok(()));
        assert!(dev.check_ip("10.0.0.1".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_denied_addresses_are_refused_at_resolve() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let resolver = GuardedResolver::new(Arc::new(EgressPolicy::public_only()));
        let name = reqwest::dns::Name::from_str("localhost").expect("name");
        let error = match resolver.resolve(name).await {
            Err(e) => e,
            Ok(_) => panic!("localhost resolves to loopback"),
        };
        let denied = denial_in(&*error).expect("an egress denial");
        assert!(
            denied.target.starts_with("localhost (resolves to"),
            "{denied}"
        );
        let allowed = GuardedResolver::new(Arc::new(EgressPolicy::parse("localhost").unwrap()));
        let name = reqwest::dns::Name::from_str("localhost").expect("name");
        assert!(
            allowed.resolve(name).await.is_ok(),
            "an allowed name resolves"
        );
    }

    #[test]
    fn a_tenants_names_reach_private_addresses_only() {
        let operator = EgressPolicy::public_only();
        let tenant = EgressPolicy::parse_tenant("*.billing.internal,10.9.0.0/16").expect("parses");
        let both = operator.union(&tenant);
        let private: IpAddr = "10.1.2.3".parse().expect("ip");
        let metadata: IpAddr = "169.254.169.254".parse().expect("ip");
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(both.check_resolved("api.billing.internal", private), Ok(()));
        assert_eq!(both.check_resolved("api.billing.internal", mapped), Ok(()));
        assert!(both
            .check_resolved("api.billing.internal", metadata)
            .is_err());
        assert!(both
            .check_resolved("api.billing.internal", loopback)
            .is_err());
        assert!(both.check_resolved("other.example", private).is_err());
        assert!(
            !both.allows_host("api.billing.internal"),
            "no name is trusted whole"
        );
        assert_eq!(both.check_ip("10.9.4.4".parse().expect("ip")), Ok(()));
        assert!(operator
            .check_resolved("api.billing.internal", private)
            .is_err());
        assert!(EgressPolicy::parse_tenant("*").is_err());
        assert!(EgressPolicy::parse_tenant("10.0.0.0/8,*").is_err());
    }
}
