//! Gateway profiles: the Whonix-style policy and realistic ways to break it.
//!
//! A profile is an nftables ruleset for the gateway namespace plus its
//! forwarding sysctls; the lab swaps them while tor keeps running. Each
//! profile states what the suite must find (see [`crate::expect`]).

use crate::plan::*;

/// What the gateway's forward chain lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Policy drop (Whonix).
    Nothing,
    /// Everything.
    All,
    /// Any TCP (someone trusted the SYN redirect to catch every connection).
    Tcp,
    /// UDP port 53 (DNS forwarded instead of redirected).
    Dns,
}

/// The knobs that generate a gateway ruleset.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// `inet` tables (IPv4 and IPv6); `false` gives IPv4-only `ip` tables.
    pub inet: bool,
    pub redirect_syn: bool,
    pub redirect_dns: bool,
    pub forward: Forward,
    pub masquerade: bool,
    /// The output chain also accepts everything from uid 0.
    pub output_root: bool,
    pub ip_forward: bool,
    pub ipv6_forward: bool,
}

impl Policy {
    /// Whonix-Gateway's policy, reduced to what this lab's gateway runs.
    pub const WHONIX: Policy = Policy {
        inet: true,
        redirect_syn: true,
        redirect_dns: true,
        forward: Forward::Nothing,
        masquerade: false,
        output_root: false,
        ip_forward: false,
        ipv6_forward: false,
    };

    /// The forwarding sysctls of this policy.
    pub fn sysctls(&self) -> Vec<(&'static str, &'static str)> {
        let b = |x: bool| if x { "1" } else { "0" };
        vec![
            ("net.ipv4.ip_forward", b(self.ip_forward)),
            ("net.ipv6.conf.all.forwarding", b(self.ipv6_forward)),
        ]
    }

    /// The nftables ruleset text (`nft -f`), replacing whatever was loaded.
    pub fn ruleset(&self, tor_uid: u32) -> String {
        let fam = if self.inet { "inet" } else { "ip" };
        let mut pre = String::new();
        if self.redirect_dns {
            pre.push_str(&format!(
                "    iifname \"{GW_INT_IF}\" udp dport 53 redirect to :{DNS_PORT}\n"
            ));
        }
        if self.redirect_syn {
            pre.push_str(&format!(
                "    iifname \"{GW_INT_IF}\" tcp flags & (fin|syn|rst|ack) == syn redirect to :{TRANS_PORT}\n"
            ));
        }
        let forward = match self.forward {
            Forward::Nothing => String::new(),
            Forward::All => format!("    iifname \"{GW_INT_IF}\" oifname \"{GW_EXT_IF}\" accept\n"),
            Forward::Tcp => format!(
                "    iifname \"{GW_INT_IF}\" oifname \"{GW_EXT_IF}\" meta l4proto tcp accept\n"
            ),
            Forward::Dns => {
                format!("    iifname \"{GW_INT_IF}\" oifname \"{GW_EXT_IF}\" udp dport 53 accept\n")
            }
        };
        let forward_back = if self.forward != Forward::Nothing {
            format!("    iifname \"{GW_EXT_IF}\" oifname \"{GW_INT_IF}\" ct state established,related accept\n")
        } else {
            String::new()
        };
        let post = if self.masquerade {
            format!(
                "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{GW_EXT_IF}\" masquerade\n  }}\n"
            )
        } else {
            String::new()
        };
        let icmp6_nd = if self.inet {
            "    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-report, mld2-listener-report } accept\n"
        } else {
            ""
        };
        let local6 = if self.inet {
            "    ip6 daddr { ::1, fd19:c33d:88bc::/64 } accept\n"
        } else {
            ""
        };
        let root = if self.output_root {
            "    meta skuid 0 accept\n"
        } else {
            ""
        };
        format!(
            "flush ruleset\n\
table {fam} leaktest_gw {{\n\
  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{pre}  }}\n\
{post}\
  chain input {{\n    type filter hook input priority filter; policy drop;\n\
    ct state invalid drop\n\
    tcp flags & (fin|syn) == (fin|syn) drop\n\
    tcp flags & (syn|rst) == (syn|rst) drop\n\
    tcp flags & (fin|syn|rst|psh|ack|urg) == 0x0 drop\n\
    tcp flags & (fin|psh|urg) == (fin|psh|urg) drop\n\
    ip frag-off & 0x1fff != 0 drop\n\
    iifname \"lo\" accept\n\
    ct state established,related accept\n\
{icmp6_nd}\
    iifname \"{GW_INT_IF}\" tcp dport {{ {TRANS_PORT}, {SOCKS_PORT} }} accept\n\
    iifname \"{GW_INT_IF}\" udp dport {DNS_PORT} accept\n\
  }}\n\
  chain forward {{\n    type filter hook forward priority filter; policy drop;\n{forward}{forward_back}  }}\n\
  chain output {{\n    type filter hook output priority filter; policy drop;\n\
    ct state invalid drop\n\
    tcp flags & (fin|syn) == (fin|syn) drop\n\
    tcp flags & (syn|rst) == (syn|rst) drop\n\
    tcp flags & (fin|syn|rst|psh|ack|urg) == 0x0 drop\n\
    tcp flags & (fin|psh|urg) == (fin|psh|urg) drop\n\
    ip frag-off & 0x1fff != 0 drop\n\
    oifname \"lo\" accept\n\
    ct state established,related accept\n\
{icmp6_nd}\
    ip daddr {{ 127.0.0.0/8, 10.152.152.0/24 }} accept\n\
{local6}\
    meta skuid {tor_uid} accept\n\
{root}\
  }}\n\
}}\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whonix_ruleset_has_the_essentials() {
        let r = Policy::WHONIX.ruleset(102);
        assert!(r.starts_with("flush ruleset\ntable inet leaktest_gw"));
        assert!(r.contains("tcp flags & (fin|syn|rst|ack) == syn redirect to :9040"));
        assert!(r.contains("udp dport 53 redirect to :5300"));
        assert!(r.contains("meta skuid 102 accept"));
        assert!(!r.contains("masquerade"));
        assert!(!r.contains("skuid 0"));
        assert_eq!(
            Policy::WHONIX.sysctls(),
            vec![
                ("net.ipv4.ip_forward", "0"),
                ("net.ipv6.conf.all.forwarding", "0")
            ]
        );
    }
}
