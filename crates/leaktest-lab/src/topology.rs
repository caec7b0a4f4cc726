//! The three namespaces and their links: `ws` — `gw` — `net`.
//!
//! Veth pairs are created directly between two lab namespaces, never in the
//! host namespace, so nothing of the lab touches the machine's real network.

use crate::plan::*;
use crate::sys;
use crate::LabError;

/// Names of the lab's namespaces for one run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Names {
    pub ws: String,
    pub gw: String,
    pub net: String,
}

impl Names {
    /// Namespace names made from a run prefix (e.g. `ltlab-1a2b3c`).
    pub fn new(prefix: &str) -> Names {
        Names {
            ws: format!("{prefix}-ws"),
            gw: format!("{prefix}-gw"),
            net: format!("{prefix}-net"),
        }
    }

    pub fn all(&self) -> [&str; 3] {
        [&self.ws, &self.gw, &self.net]
    }
}

/// Sysctls every lab namespace gets before addresses are added: no DAD
/// delays, no router advertisements learnt, forwarding off.
const BASE_SYSCTLS: [(&str, &str); 6] = [
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv6.conf.all.accept_ra", "0"),
    ("net.ipv6.conf.default.accept_ra", "0"),
    ("net.ipv4.ip_forward", "0"),
    ("net.ipv6.conf.all.forwarding", "0"),
];

/// Creates the namespaces (the caller has already recorded their names in
/// the state file, so a crash from here on leaves nothing unknown).
pub fn create(n: &Names) -> Result<(), LabError> {
    for ns in n.all() {
        sys::netns_add(ns)?;
        sys::sysctls(ns, &BASE_SYSCTLS)?;
    }
    // ws.eth0 <-> gw.eth1, gw.eth0 <-> net.eth0, made inside the namespaces.
    sys::run(std::process::Command::new("ip").args([
        "link", "add", "name", WS_IF, "netns", &n.ws, "type", "veth", "peer", "name", GW_INT_IF,
        "netns", &n.gw,
    ]))?;
    sys::run(std::process::Command::new("ip").args([
        "link", "add", "name", GW_EXT_IF, "netns", &n.gw, "type", "veth", "peer", "name", NET_IF,
        "netns", &n.net,
    ]))?;
    sys::ip_batch(
        &n.ws,
        &format!(
            "link set lo up\nlink set {WS_IF} up\naddr add {WS4}/{INT_PREFIX4} dev {WS_IF}\n\
             addr add {WS6}/{INT_PREFIX6} dev {WS_IF} nodad\nroute add default via {GW_INT4}\n\
             route add default via {GW_INT6}\n"
        ),
    )?;
    sys::ip_batch(
        &n.gw,
        &format!(
            "link set lo up\nlink set {GW_INT_IF} up\nlink set {GW_EXT_IF} up\n\
             addr add {GW_INT4}/{INT_PREFIX4} dev {GW_INT_IF}\naddr add {GW_INT6}/{INT_PREFIX6} dev {GW_INT_IF} nodad\n\
             addr add {GW_EXT4}/24 dev {GW_EXT_IF}\naddr add {GW_EXT6}/64 dev {GW_EXT_IF} nodad\n\
             route add default via {NET_ROUTER4}\nroute add default via {NET_ROUTER6}\n"
        ),
    )?;
    let mut b = format!(
        "link set lo up\nlink set {NET_IF} up\n\
         addr add {NET_ROUTER4}/24 dev {NET_IF}\naddr add {NET_ROUTER6}/64 dev {NET_IF} nodad\n\
         addr add {WEB6}/128 dev lo nodad\n"
    );
    for a in net_service_addrs() {
        b.push_str(&format!("addr add {a}/32 dev lo\n"));
    }
    sys::ip_batch(&n.net, &b)?;
    // Permanent neighbour entries on both links: at full probe rate the
    // first hundreds of packets would otherwise die in the neighbour queue
    // while ARP/ND resolves (and a leak would go unseen).
    let router_mac = mac_of(&n.net, NET_IF)?;
    let gw_int_mac = mac_of(&n.gw, GW_INT_IF)?;
    let ws_mac = mac_of(&n.ws, WS_IF)?;
    // The spoof suite's "another host of the workstation's subnet" (and its
    // link-local IPv6 source, which passes the reverse-path check on the
    // internal link) is, in the lab, a neighbour that exists (at the workstation's MAC, whose
    // kernel drops what is not addressed to it). Without it, what the
    // gateway sends to that address (tor's SYN-ACK to a redirected SYN, a
    // reply it forwards) waits for a resolution that fails seconds later,
    // and the gateway's ICMP host-unreachable to the sender of that packet
    // (RELATED, so the output chain's `ct state related` passes it) leaves
    // by the uplink, in the clear, at a moment no watch can bound. The
    // workstation itself is a permanent neighbour too: under a full-rate
    // sweep that the gateway forwards, the replies from beyond (RSTs, ICMP
    // errors) queue for its resolution, and a resolution lost in the flood
    // ends the same way (measured: one ICMPv6 address-unreachable to the
    // web server in a run of the ipv6-forward profile).
    sys::ip_batch(
        &n.gw,
        &format!(
            "neigh replace {NET_ROUTER4} lladdr {router_mac} dev {GW_EXT_IF} nud permanent\n\
             neigh replace {NET_ROUTER6} lladdr {router_mac} dev {GW_EXT_IF} nud permanent\n\
             neigh replace {WS4} lladdr {ws_mac} dev {GW_INT_IF} nud permanent\n\
             neigh replace {WS6} lladdr {ws_mac} dev {GW_INT_IF} nud permanent\n\
             neigh replace {WS_NEIGHBOUR4} lladdr {ws_mac} dev {GW_INT_IF} nud permanent\n\
             neigh replace {WS_NEIGHBOUR6} lladdr {ws_mac} dev {GW_INT_IF} nud permanent\n\
             neigh replace {WS_LINK_LOCAL_NEIGHBOUR6} lladdr {ws_mac} dev {GW_INT_IF} nud permanent\n"
        ),
    )?;
    sys::ip_batch(
        &n.ws,
        &format!(
            "neigh replace {GW_INT4} lladdr {gw_int_mac} dev {WS_IF} nud permanent\n\
             neigh replace {GW_INT6} lladdr {gw_int_mac} dev {WS_IF} nud permanent\n"
        ),
    )?;
    Ok(())
}

/// A shell command, run inside the gateway's namespace, that deletes its
/// uplink and 300 ms later creates it again as [`create`] made it: the
/// same names, MAC addresses (both ends), addresses, routes and permanent
/// neighbour entry, as a re-plugged NIC or a re-created tunnel comes back.
/// Everything tied to the old interface's index is gone with it.
pub fn recreate_uplink_script(n: &Names) -> String {
    let net = &n.net;
    let mac = |ns: &str, dev: &str| {
        format!(
            "$(ip -n {ns} -o link show dev {dev} | sed 's|.*link/ether \\([0-9a-f:]*\\).*|\\1|')"
        )
    };
    format!(
        "gwmac={gwmac} && netmac={netmac} && ip link del {GW_EXT_IF} && sleep 0.3 && \
         ip link add name {GW_EXT_IF} address $gwmac type veth peer name {NET_IF} address $netmac netns {net} && \
         ip -n {net} link set {NET_IF} up && ip -n {net} addr add {NET_ROUTER4}/24 dev {NET_IF} && \
         ip -n {net} addr add {NET_ROUTER6}/64 dev {NET_IF} nodad && \
         ip addr add {GW_EXT4}/24 dev {GW_EXT_IF} && ip addr add {GW_EXT6}/64 dev {GW_EXT_IF} nodad && \
         ip neigh replace {NET_ROUTER4} lladdr $netmac dev {GW_EXT_IF} nud permanent && \
         ip neigh replace {NET_ROUTER6} lladdr $netmac dev {GW_EXT_IF} nud permanent && \
         ip link set {GW_EXT_IF} up && ip route add default via {NET_ROUTER4} && \
         ip route add default via {NET_ROUTER6}",
        gwmac = mac(&n.gw, GW_EXT_IF),
        netmac = mac(net, NET_IF),
    )
}

/// The MAC address of `dev` inside `ns`.
fn mac_of(ns: &str, dev: &str) -> Result<String, LabError> {
    let out = sys::run(
        std::process::Command::new("ip").args(["-n", ns, "-o", "link", "show", "dev", dev]),
    )?;
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| LabError::Netns(ns.to_string(), format!("{dev} has no MAC address")))
}

/// Deletes every namespace of `n` that exists; returns the first error.
pub fn destroy(n: &Names) -> Result<(), LabError> {
    let mut first = Ok(());
    for ns in n.all() {
        if let Err(e) = sys::netns_del(ns) {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}
