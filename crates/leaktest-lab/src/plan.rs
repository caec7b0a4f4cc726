//! The lab's fixed address plan, ports and names.
//!
//! Every address lives in a lab namespace: the workstation–gateway link uses
//! Whonix's internal plan (10.152.152.0/18, fd19:c33d:88bc::/64) and
//! Whonix-Gateway's interface names (uplink `eth0`, internal `eth1`), so a
//! ruleset written for a Whonix-Gateway loads unchanged; the lab's
//! "internet" uses documentation ranges only (198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32), so nothing can ever be mistaken for a real host.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Workstation address on the internal link.
pub const WS4: Ipv4Addr = Ipv4Addr::new(10, 152, 152, 11);
pub const WS6: Ipv6Addr = Ipv6Addr::new(0xfd19, 0xc33d, 0x88bc, 0, 0, 0, 0, 0x11);
/// Gateway address on the internal link.
/// The spoof suite's forged "another host of the workstation's subnet"
/// (the workstation's address with bit 7 of the last byte flipped), a
/// permanent neighbour of the gateway at the workstation's MAC.
pub const WS_NEIGHBOUR4: Ipv4Addr = Ipv4Addr::new(10, 152, 152, 139);
pub const WS_NEIGHBOUR6: Ipv6Addr = Ipv6Addr::new(0xfd19, 0xc33d, 0x88bc, 0, 0, 0, 0, 0x91);
/// The spoof suite's forged link-local IPv6 source (fe80::9), also a
/// permanent neighbour of the gateway at the workstation's MAC.
pub const WS_LINK_LOCAL_NEIGHBOUR6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 9);

pub const GW_INT4: Ipv4Addr = Ipv4Addr::new(10, 152, 152, 10);
pub const GW_INT6: Ipv6Addr = Ipv6Addr::new(0xfd19, 0xc33d, 0x88bc, 0, 0, 0, 0, 0x10);
/// Gateway address on the external link, towards `net`.
pub const GW_EXT4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
pub const GW_EXT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The lab internet's router address on the gateway's external link.
pub const NET_ROUTER4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const NET_ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The lab web server (also the probes' target).
pub const WEB4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
pub const WEB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x80, 0, 0, 0, 0, 0x80);
/// The lab DNS server, the exits' only resolver.
pub const DNS4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
/// The lab domain name that the DNS server answers.
pub const WEB_NAME: &str = "www.leaktest.test";
/// The web server's port (the probes' target answers a SYN to it).
pub const WEB_PORT: u16 = 80;

/// Prefix length of the internal link's IPv4 subnet (Whonix: 10.152.152.0/18).
pub const INT_PREFIX4: u8 = 18;
/// Prefix length of the internal link's IPv6 subnet.
pub const INT_PREFIX6: u8 = 64;

/// Interface names (each ≤ 15 bytes): Whonix-Gateway's, uplink `eth0` and
/// internal `eth1` (each namespace has its own: the workstation's and the
/// internet router's are `eth0` too).
pub const WS_IF: &str = "eth0";
pub const GW_INT_IF: &str = "eth1";
pub const GW_EXT_IF: &str = "eth0";
pub const NET_IF: &str = "eth0";

/// Tor's ports on the gateway's internal addresses (Whonix's numbers).
pub const TRANS_PORT: u16 = 9040;
pub const DNS_PORT: u16 = 5300;
pub const SOCKS_PORT: u16 = 9050;
/// The gateway tor's control port on its loopback.
pub const CONTROL_PORT: u16 = 9052;
/// Whonix-Gateway's other SocksPorts (stream isolation per application,
/// inclusive ranges) and its HTTPTunnelPorts, all on the internal
/// addresses like [`SOCKS_PORT`]: a Whonix ruleset that accepts them on
/// the internal interface finds them listening.
pub const WHONIX_SOCKS_PORTS: [(u16, u16); 6] = [
    (9100, 9111),
    (9114, 9115),
    (9117, 9118),
    (9122, 9125),
    (9150, 9150),
    (9152, 9189),
];
pub const WHONIX_HTTP_TUNNEL_PORTS: (u16, u16) = (9190, 9229);

/// What one node of the private Tor network is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Authority,
    Guard,
    Exit,
    /// An unpublished bridge (`BridgeRelay 1`, `PublishServerDescriptor 0`)
    /// reached only through its obfs4 transport ([`BRIDGE_OBFS4_PORT`]);
    /// never in the consensus.
    Bridge,
}

/// The port of the lab bridge's obfs4 listener
/// (`ServerTransportListenAddr obfs4`).
pub const BRIDGE_OBFS4_PORT: u16 = 4443;

/// One node of the private Tor network.
#[derive(Clone, Copy, Debug)]
pub struct NodePlan {
    pub nick: &'static str,
    pub role: Role,
    pub addr: Ipv4Addr,
    pub or_port: u16,
    /// Only authorities serve a DirPort.
    pub dir_port: Option<u16>,
}

/// The private Tor network: three authorities, two guards on unusual ORPorts,
/// two exits (a single exit logs "Failed to choose an exit server" forever),
/// and one obfs4 bridge (the `whonix-bridge` profile and `--bridge`).
pub const NODES: [NodePlan; 8] = [
    NodePlan {
        nick: "ltauth1",
        role: Role::Authority,
        addr: Ipv4Addr::new(198, 51, 100, 11),
        or_port: 7000,
        dir_port: Some(7080),
    },
    NodePlan {
        nick: "ltauth2",
        role: Role::Authority,
        addr: Ipv4Addr::new(198, 51, 100, 12),
        or_port: 7000,
        dir_port: Some(7080),
    },
    NodePlan {
        nick: "ltauth3",
        role: Role::Authority,
        addr: Ipv4Addr::new(198, 51, 100, 13),
        or_port: 7000,
        dir_port: Some(7080),
    },
    NodePlan {
        nick: "ltguard1",
        role: Role::Guard,
        addr: Ipv4Addr::new(198, 51, 100, 21),
        or_port: 5555,
        dir_port: None,
    },
    NodePlan {
        nick: "ltguard2",
        role: Role::Guard,
        addr: Ipv4Addr::new(198, 51, 100, 22),
        or_port: 8443,
        dir_port: None,
    },
    NodePlan {
        nick: "ltexit1",
        role: Role::Exit,
        addr: Ipv4Addr::new(198, 51, 100, 31),
        or_port: 9001,
        dir_port: None,
    },
    NodePlan {
        nick: "ltexit2",
        role: Role::Exit,
        addr: Ipv4Addr::new(198, 51, 100, 32),
        or_port: 9001,
        dir_port: None,
    },
    NodePlan {
        nick: "ltbridge1",
        role: Role::Bridge,
        addr: Ipv4Addr::new(198, 51, 100, 41),
        or_port: 9002,
        dir_port: None,
    },
];

/// The nodes the consensus lists (every one but the bridge).
pub fn consensus_nodes() -> impl Iterator<Item = &'static NodePlan> {
    NODES.iter().filter(|n| n.role != Role::Bridge)
}

/// The lab's obfs4 bridge.
pub fn bridge_node() -> &'static NodePlan {
    NODES
        .iter()
        .find(|n| n.role == Role::Bridge)
        .expect("the plan has a bridge")
}

/// Every address of the lab internet's service interface.
pub fn net_service_addrs() -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = NODES.iter().map(|n| n.addr).collect();
    v.push(WEB4);
    v.push(DNS4);
    v
}

/// The exits' addresses: what the web server must see.
pub fn exit_addrs() -> Vec<Ipv4Addr> {
    NODES
        .iter()
        .filter(|n| n.role == Role::Exit)
        .map(|n| n.addr)
        .collect()
}

/// The whole plan as data (`leaktest lab plan --json`): what a gateway
/// developer needs to write a ruleset the lab can load: namespaces (their
/// names end in `-ws`, `-gw`, `-net` after a run prefix), interfaces and
/// addresses, tor's ports and user on the gateway, the three sweeps (how
/// they send and as which uid), and the private Tor network. Built from the
/// same constants the lab uses, so it cannot drift from it.
pub fn describe(tor_uid: Option<u32>) -> serde_json::Value {
    use serde_json::json;
    let nodes: Vec<_> = NODES
        .iter()
        .map(|n| {
            json!({
                "nick": n.nick,
                "role": format!("{:?}", n.role).to_lowercase(),
                "address": n.addr.to_string(),
                "or_port": n.or_port,
                "dir_port": n.dir_port,
                "obfs4_port": (n.role == Role::Bridge).then_some(BRIDGE_OBFS4_PORT),
            })
        })
        .collect();
    json!({
        "namespaces": {
            "workstation": {
                "name": "<prefix>-ws",
                "interfaces": [{"name": WS_IF, "addresses": [format!("{WS4}/{INT_PREFIX4}"), format!("{WS6}/{INT_PREFIX6}")]}],
                "routes": [format!("default via {GW_INT4}"), format!("default via {GW_INT6}")],
            },
            "gateway": {
                "name": "<prefix>-gw",
                "interfaces": [
                    {"name": GW_INT_IF, "role": "internal (towards the workstation)",
                     "addresses": [format!("{GW_INT4}/{INT_PREFIX4}"), format!("{GW_INT6}/{INT_PREFIX6}")]},
                    {"name": GW_EXT_IF, "role": "external (watched)",
                     "addresses": [format!("{GW_EXT4}/24"), format!("{GW_EXT6}/64")]},
                ],
                "routes": [format!("default via {NET_ROUTER4}"), format!("default via {NET_ROUTER6}")],
            },
            "internet": {
                "name": "<prefix>-net",
                "interfaces": [{"name": NET_IF, "addresses": [format!("{NET_ROUTER4}/24"), format!("{NET_ROUTER6}/64")]}],
                "services": {"web": [WEB4.to_string(), WEB6.to_string()], "web_port": WEB_PORT,
                             "web_name": WEB_NAME, "dns": DNS4.to_string()},
            },
        },
        "tor": {
            "user": crate::gateway::TOR_USER,
            "uid": tor_uid,
            "trans_port": TRANS_PORT,
            "dns_port": DNS_PORT,
            "socks_port": SOCKS_PORT,
            "whonix_socks_ports": WHONIX_SOCKS_PORTS.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>(),
            "http_tunnel_ports": format!("{}-{}", WHONIX_HTTP_TUNNEL_PORTS.0, WHONIX_HTTP_TUNNEL_PORTS.1),
            "control_port": format!("127.0.0.1:{CONTROL_PORT}"),
            "listen": [GW_INT4.to_string(), GW_INT6.to_string()],
        },
        "sweeps": [
            {"name": "workstation", "from": "<prefix>-ws", "socket": "packet", "uid": 0},
            {"name": "gateway-root", "from": "<prefix>-gw", "socket": "raw", "uid": 0},
            {"name": "gateway-user", "from": "<prefix>-gw", "socket": "raw",
             "uid": crate::suite::UNPRIVILEGED_UID, "capabilities": ["CAP_NET_RAW"]},
        ],
        "targets": [WEB4.to_string(), WEB6.to_string()],
        "tor_network": nodes,
    })
}

/// The forged source of a `spoof` probe sent from the workstation (where
/// the gateway's answer to it, a reflection, goes); `None` for other probes.
pub fn forged_source(spec: &leaktest_wire::ProbeSpec) -> Option<std::net::IpAddr> {
    use leaktest_wire::catalogue::ProbeKind;
    let ProbeKind::Spoof { source, .. } = spec.kind else {
        return None;
    };
    let ends = leaktest_wire::Endpoints {
        src4: Some(WS4),
        dst4: Some(WEB4),
        src6: Some(WS6),
        dst6: Some(WEB6),
    };
    let hood = leaktest_wire::Neighbourhood {
        gateway4: Some(GW_INT4),
        gateway6: Some(GW_INT6),
        prefix4: Some(INT_PREFIX4),
        prefix6: Some(INT_PREFIX6),
        uplink4: Some((GW_EXT4, 24)),
        uplink6: Some((GW_EXT6, 64)),
        router4: Some(NET_ROUTER4),
        router6: Some(NET_ROUTER6),
    };
    leaktest_wire::compose::spoof_address(source, spec.family, &ends, &hood)
}

/// Where a sweep sends `spec`: the lab's web server, or for the `lan`
/// suite the destination it names, as `leaktest probe` builds it in that
/// sweep (the lab gives every sweep the gateway's uplink and router; the
/// subnet and next hop are the sender's own: the workstation's internal
/// link, or the gateway's uplink); `None` if it is not built in the lab.
pub fn sweep_destination(
    sweep: crate::profiles::Sweep,
    spec: &leaktest_wire::ProbeSpec,
) -> Option<std::net::IpAddr> {
    use crate::profiles::Sweep;
    use leaktest_wire::catalogue::{Family, ProbeKind};
    use std::net::IpAddr;
    let ws = sweep == Sweep::Workstation;
    let (src, target): (IpAddr, IpAddr) = match (spec.family, ws) {
        (Family::V4, true) => (WS4.into(), WEB4.into()),
        (Family::V6, true) => (WS6.into(), WEB6.into()),
        (Family::V4, false) => (GW_EXT4.into(), WEB4.into()),
        (Family::V6, false) => (GW_EXT6.into(), WEB6.into()),
    };
    match spec.kind {
        ProbeKind::Lan { dest, .. } => {
            let hood = leaktest_wire::Neighbourhood {
                gateway4: Some(if ws { GW_INT4 } else { NET_ROUTER4 }),
                gateway6: Some(if ws { GW_INT6 } else { NET_ROUTER6 }),
                prefix4: Some(if ws { INT_PREFIX4 } else { 24 }),
                prefix6: Some(if ws { INT_PREFIX6 } else { 64 }),
                uplink4: Some((GW_EXT4, 24)),
                uplink6: Some((GW_EXT6, 64)),
                router4: Some(NET_ROUTER4),
                router6: Some(NET_ROUTER6),
            };
            leaktest_wire::compose::lan_address(dest, spec.family, src, &hood)
        }
        _ => Some(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_described_plan_is_the_plan() {
        let v = describe(Some(102));
        let gw = &v["namespaces"]["gateway"]["interfaces"];
        assert_eq!(gw[0]["name"], GW_INT_IF);
        assert_eq!(gw[1]["addresses"][0], format!("{GW_EXT4}/24"));
        assert_eq!(v["tor"]["trans_port"], TRANS_PORT);
        assert_eq!(v["tor"]["uid"], 102);
        assert_eq!(v["sweeps"][2]["uid"], crate::suite::UNPRIVILEGED_UID);
        assert_eq!(v["tor_network"].as_array().unwrap().len(), NODES.len());
    }

    #[test]
    fn every_lab_internet_address_is_in_a_documentation_range() {
        for a in net_service_addrs()
            .into_iter()
            .chain([GW_EXT4, NET_ROUTER4])
        {
            let o = a.octets();
            assert!(
                (o[0], o[1], o[2]) == (198, 51, 100) || (o[0], o[1], o[2]) == (203, 0, 113),
                "{a}"
            );
        }
        for a in [GW_EXT6, NET_ROUTER6, WEB6] {
            assert_eq!(a.segments()[..2], [0x2001, 0xdb8], "{a}");
        }
    }

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        for n in [WS_IF, GW_INT_IF, GW_EXT_IF, NET_IF] {
            assert!(n.len() <= 15);
        }
    }

    #[test]
    fn guards_use_unusual_orports_and_names_are_unique() {
        let guards: Vec<_> = NODES.iter().filter(|n| n.role == Role::Guard).collect();
        assert!(guards.len() >= 2);
        for g in guards {
            assert!(![443, 9001, 9030, 80].contains(&g.or_port));
        }
        let mut nicks: Vec<_> = NODES.iter().map(|n| n.nick).collect();
        nicks.sort();
        nicks.dedup();
        assert_eq!(nicks.len(), NODES.len());
    }
}
