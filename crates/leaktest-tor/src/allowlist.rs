//! The TCP endpoints the gateway's own Tor may legitimately talk to, each with the roles it
//! plays for Tor (what Tor sends there), and pure parsers that build the list from what the
//! control port says: relays of the consensus (`GETINFO ns/all`), directory authorities and
//! fallback directories (`GETINFO config/defaults`, `GETCONF DirAuthority`/`FallbackDir`),
//! bridges and their pluggable transports (`GETCONF Bridge`), and upstream proxies.
//!
//! DirPorts: a Tor *client* never connects to a DirPort. It fetches directory documents over a
//! BEGIN_DIR stream inside its TLS link to the ORPort, also when `FascistFirewall` or
//! `ReachableORAddresses` leave no ORPort reachable (then it fetches nothing). tor's
//! `dirclient.c`: `dirclient_must_use_begindir()` returns `!public_server_mode(options)`, and
//! `directory_initiate_request` refuses a non-begindir request for such a Tor ("Client could not
//! use begindir connection"). Only a relay (an ORPort configured) uploads to authorities'
//! DirPorts in plain HTTP. So DirPorts enter the list only for a Tor in server mode
//! ([`fetch_allowlist`]).
//!
//! Parsers skip lines they cannot read (a Tor newer than this code may add fields); they never
//! fail and never panic on input.

use crate::client::Controller;
use crate::error::Result;
use crate::reply::maybe_unquote;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::OnceLock;

/// What an endpoint is to Tor, which says what Tor sends there. A set of bits: one endpoint can
/// be a relay's ORPort and another's DirPort.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);
    /// A relay's or directory server's ORPort: Tor's link protocol, inside TLS (tor-spec section
    /// 2, "Connections").
    pub const OR_PORT: Roles = Roles(1);
    /// A directory server's DirPort: plain HTTP requests for `/tor/...` documents (dir-spec),
    /// used by relays only.
    pub const DIR_PORT: Roles = Roles(2);
    /// A bridge without a pluggable transport: an ORPort, TLS.
    pub const BRIDGE: Roles = Roles(4);
    /// An obfs4 bridge: no plaintext framing at all (obfs4-spec: an Elligator2 representative,
    /// random padding, then frames whose length is masked).
    pub const BRIDGE_OBFS4: Roles = Roles(8);
    /// A bridge with another pluggable transport (webtunnel, meek, ...): its own encrypted
    /// framing, never cleartext.
    pub const BRIDGE_OTHER_TRANSPORT: Roles = Roles(16);
    /// An upstream proxy (`HTTPSProxy`, `Socks4Proxy`, `Socks5Proxy`): a proxy handshake in the
    /// clear (it names the relay), then TLS.
    pub const PROXY: Roles = Roles(32);
    /// Not a role but where the endpoint came from: the consensus (`GETINFO
    /// ns/all`), which the directory authorities sign, unlike the
    /// configuration (`Bridge`, `DirAuthority`, `FallbackDir`, proxies) that
    /// anyone with the control port can change.
    pub const IN_CONSENSUS: Roles = Roles(64);

    /// Roles from [`Roles::bits`] (for a message between processes);
    /// unknown bits are dropped.
    pub fn from_bits(b: u8) -> Roles {
        Roles(b & 127)
    }

    pub fn contains(self, other: Roles) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
    pub fn intersects(self, other: Roles) -> bool {
        self.0 & other.0 != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn bits(self) -> u8 {
        self.0
    }
    /// Whether Tor's flows to this endpoint are TLS from their first byte.
    pub fn expects_tls(self) -> bool {
        self.intersects(Roles(Roles::OR_PORT.0 | Roles::BRIDGE.0))
    }
    /// Every single role with its short name, in a fixed order.
    pub const NAMED: [(Roles, &'static str); 6] = [
        (Roles::OR_PORT, "orport"),
        (Roles::DIR_PORT, "dirport"),
        (Roles::BRIDGE, "bridge"),
        (Roles::BRIDGE_OBFS4, "obfs4-bridge"),
        (Roles::BRIDGE_OTHER_TRANSPORT, "transport-bridge"),
        (Roles::PROXY, "proxy"),
    ];

    /// Short names of the roles, for people.
    pub fn names(self) -> Vec<&'static str> {
        Roles::NAMED
            .into_iter()
            .filter(|(r, _)| self.contains(*r))
            .map(|(_, n)| n)
            .collect()
    }
}

impl std::ops::BitOr for Roles {
    type Output = Roles;
    fn bitor(self, o: Roles) -> Roles {
        Roles(self.0 | o.0)
    }
}

impl std::ops::BitOrAssign for Roles {
    fn bitor_assign(&mut self, o: Roles) {
        self.0 |= o.0;
    }
}

/// The TCP endpoints (address, port) Tor may use, with their [`Roles`].
///
/// Looked up once per outbound TCP frame, so it keeps IPv4 endpoints as packed `u64` and IPv6
/// ones as `(u128, u16)` in hash maps with a cheap seeded multiply-mix hash (not SipHash); the
/// per-process random seed keeps relay addresses from being chosen to collide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    v4: HashMap<u64, Roles, SeededState>,
    v6: HashMap<(u128, u16), Roles, SeededState>,
}

/// `BuildHasher` with a per-process random seed: a cheap multiply-mix hash
/// for the hash maps looked up once per captured frame (the allowlist, the
/// watcher's flow table), where SipHash, std's default, costs a third of the
/// per-frame time; the seed keeps keys from being chosen to collide.
#[derive(Clone, Copy, Debug)]
pub struct SeededState(u64);

impl Default for SeededState {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        SeededState(*SEED.get_or_init(|| {
            let mut b = [0u8; 8];
            if getrandom::fill(&mut b).is_err() {
                // No randomness: still a valid (if predictable) hash.
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0x5eed);
                b = t.to_le_bytes();
            }
            u64::from_le_bytes(b) | 1
        }))
    }
}

impl BuildHasher for SeededState {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher(self.0)
    }
}

/// Multiply-rotate mixing with a splitmix64 finaliser.
pub struct MixHasher(u64);

impl Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_u16(&mut self, x: u16) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[inline]
fn key4(ip: Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from(ip)) << 16) | u64::from(port)
}

impl Allowlist {
    pub fn new() -> Self {
        Allowlist::default()
    }
    /// Adds `roles` to endpoint `a` (an IPv4-mapped IPv6 address is its IPv4 endpoint).
    pub fn insert_with(&mut self, a: SocketAddr, roles: Roles) {
        // Port 0 means "no such port" in Tor's formats; it is never a real endpoint.
        if a.port() == 0 || roles.is_empty() {
            return;
        }
        match normalise(a) {
            Key::V4(k) => *self.v4.entry(k).or_default() |= roles,
            Key::V6(k) => *self.v6.entry(k).or_default() |= roles,
        }
    }
    /// Adds endpoint `a` as an ORPort.
    pub fn insert(&mut self, a: SocketAddr) {
        self.insert_with(a, Roles::OR_PORT);
    }
    /// The roles of endpoint `a` (flow info and scope id of an IPv6 endpoint do not matter).
    #[inline]
    pub fn roles(&self, a: &SocketAddr) -> Option<Roles> {
        match normalise(*a) {
            Key::V4(k) => self.v4.get(&k).copied(),
            Key::V6(k) => self.v6.get(&k).copied(),
        }
    }
    #[inline]
    pub fn contains(&self, a: &SocketAddr) -> bool {
        self.roles(a).is_some()
    }
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
    /// Adds every endpoint of `other` with its roles.
    pub fn extend(&mut self, other: &Allowlist) {
        for (k, r) in &other.v4 {
            *self.v4.entry(*k).or_default() |= *r;
        }
        for (k, r) in &other.v6 {
            *self.v6.entry(*k).or_default() |= *r;
        }
    }
    /// Takes `roles` away from every endpoint; endpoints left without a role go.
    pub fn remove_roles(&mut self, roles: Roles) {
        // An endpoint left with no role (its provenance bit aside) goes.
        let strip = |r: &mut Roles| {
            r.0 &= !roles.0;
            r.0 & !Roles::IN_CONSENSUS.0 != 0
        };
        self.v4.retain(|_, r| strip(r));
        self.v6.retain(|_, r| strip(r));
    }
    /// The endpoints and their roles, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, Roles)> + '_ {
        let v4 = self.v4.iter().map(|(&k, &r)| {
            (
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from((k >> 16) as u32),
                    k as u16,
                )),
                r,
            )
        });
        let v6 = self.v6.iter().map(|(&(ip, port), &r)| {
            (
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)),
                r,
            )
        });
        v4.chain(v6)
    }
    /// The endpoints sorted (for stable output).
    pub fn sorted(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self.iter().map(|(a, _)| a).collect();
        v.sort();
        v
    }
}

enum Key {
    V4(u64),
    V6((u128, u16)),
}

#[inline]
fn normalise(a: SocketAddr) -> Key {
    match a {
        SocketAddr::V4(v4) => Key::V4(key4(*v4.ip(), v4.port())),
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(ip) => Key::V4(key4(ip, v6.port())),
            None => Key::V6((u128::from(*v6.ip()), v6.port())),
        },
    }
}

impl FromIterator<SocketAddr> for Allowlist {
    /// ORPorts.
    fn from_iter<T: IntoIterator<Item = SocketAddr>>(iter: T) -> Self {
        let mut a = Allowlist::new();
        for s in iter {
            a.insert(s);
        }
        a
    }
}

impl FromIterator<(SocketAddr, Roles)> for Allowlist {
    fn from_iter<T: IntoIterator<Item = (SocketAddr, Roles)>>(iter: T) -> Self {
        let mut a = Allowlist::new();
        for (s, r) in iter {
            a.insert_with(s, r);
        }
        a
    }
}

/// `GETINFO ns/all` (or a NEWCONSENSUS event body): every `r` line gives the IPv4 ORPort and,
/// if nonzero, the DirPort; every `a` line an (IPv6) ORPort.
pub fn parse_ns_all(text: &str) -> Allowlist {
    let mut list = Allowlist::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        match words.next() {
            Some("r") => {
                // `r NICK ID DIGEST DATE TIME IP ORPORT DIRPORT`; the microdescriptor flavour has
                // no DIGEST, so read the address and ports from the end.
                let w: Vec<&str> = words.collect();
                if w.len() < 6 {
                    continue;
                }
                let n = w.len();
                let (Ok(ip), Ok(or), Ok(dir)) = (
                    w[n - 3].parse::<Ipv4Addr>(),
                    w[n - 2].parse::<u16>(),
                    w[n - 1].parse::<u16>(),
                ) else {
                    continue;
                };
                list.insert_with(
                    SocketAddr::new(IpAddr::V4(ip), or),
                    Roles::OR_PORT | Roles::IN_CONSENSUS,
                );
                list.insert_with(
                    SocketAddr::new(IpAddr::V4(ip), dir),
                    Roles::DIR_PORT | Roles::IN_CONSENSUS,
                );
            }
            Some("a") => {
                if let Some(Ok(a)) = words.next().map(str::parse::<SocketAddr>) {
                    list.insert_with(a, Roles::OR_PORT | Roles::IN_CONSENSUS);
                }
            }
            _ => {}
        }
    }
    list
}

/// Reads `ADDR[:PORT]` (IPv4) of a DirAuthority/FallbackDir line.
fn ipv4_with_optional_port(w: &str) -> Option<(Ipv4Addr, u16)> {
    if let Ok(a) = w.parse::<SocketAddrV4>() {
        return Some((*a.ip(), a.port()));
    }
    w.parse::<Ipv4Addr>().ok().map(|ip| (ip, 0))
}

/// Endpoints of one directory-server line (the value of `DirAuthority` or `FallbackDir`):
/// `[NICK] [flags] IPV4[:DIRPORT] [FINGERPRINT]` with flags `orport=N`, `ipv6=[ADDR]:PORT`,
/// `id=`, `v3ident=`, `weight=`, `no-v2`, `bridge`, ...: the DirPort and the ORPort on the IPv4
/// address, and the IPv6 ORPort.
pub fn parse_dir_server_line(value: &str) -> Vec<(SocketAddr, Roles)> {
    let mut ipv4: Option<(Ipv4Addr, u16)> = None;
    let mut orport: Option<u16> = None;
    let mut out = Vec::new();
    for w in value.split_ascii_whitespace() {
        if let Some(p) = w.strip_prefix("orport=") {
            orport = p.parse().ok();
        } else if let Some(a) = w.strip_prefix("ipv6=") {
            if let Ok(a) = a.parse::<SocketAddr>() {
                out.push((a, Roles::OR_PORT));
            }
        } else if ipv4.is_none() && !w.contains('=') {
            ipv4 = ipv4_with_optional_port(w);
        }
    }
    if let Some((ip, dirport)) = ipv4 {
        if dirport != 0 {
            out.push((SocketAddr::new(IpAddr::V4(ip), dirport), Roles::DIR_PORT));
        }
        if let Some(or) = orport.filter(|&p| p != 0) {
            out.push((SocketAddr::new(IpAddr::V4(ip), or), Roles::OR_PORT));
        }
    }
    out
}

/// Endpoint of one `Bridge` value, `[TRANSPORT] ADDR[:PORT] [FINGERPRINT] [k=v ...]` (a missing
/// port is 443, as in Tor), with its role by transport: none is a plain bridge (TLS), `obfs4`
/// an obfs4 bridge, any other transport name another transport.
pub fn parse_bridge_line(value: &str) -> Option<(SocketAddr, Roles)> {
    let mut words = value.split_ascii_whitespace();
    let first = words.next()?;
    match bridge_addr(first) {
        Some(a) => Some((a, Roles::BRIDGE)),
        None => {
            let a = bridge_addr(words.next()?)?;
            let role = if first.eq_ignore_ascii_case("obfs4") {
                Roles::BRIDGE_OBFS4
            } else {
                Roles::BRIDGE_OTHER_TRANSPORT
            };
            Some((a, role))
        }
    }
}

fn bridge_addr(w: &str) -> Option<SocketAddr> {
    if let Ok(a) = w.parse::<SocketAddr>() {
        return Some(a);
    }
    if let Ok(ip) = w.parse::<Ipv4Addr>() {
        return Some(SocketAddr::new(IpAddr::V4(ip), 443));
    }
    let inner = w.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| SocketAddr::new(IpAddr::V6(ip), 443))
}

/// Endpoint of an upstream proxy option (`HTTPSProxy`, `Socks4Proxy`, `Socks5Proxy`): only IP
/// literals (a host name would need DNS); default port 443 for HTTPS, 1080 for SOCKS.
pub fn parse_proxy(value: &str, default_port: u16) -> Option<SocketAddr> {
    let w = value.split_ascii_whitespace().next()?;
    if let Ok(a) = w.parse::<SocketAddr>() {
        return Some(a);
    }
    if let Ok(ip) = w.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, default_port));
    }
    let inner = w.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

/// Which compiled-in directory servers Tor uses, given its configuration (Tor's
/// `consider_adding_dir_servers`): none of them once `DirAuthority` is set; the v3 authorities
/// unless `AlternateDirAuthority` is set; the bridge authority unless `AlternateBridgeAuthority`
/// is set; the fallbacks only when neither `DirAuthority`, `AlternateDirAuthority` nor
/// `FallbackDir` is set and `UseDefaultFallbackDirs` is 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultDirs {
    pub v3_authorities: bool,
    pub bridge_authority: bool,
    pub fallbacks: bool,
}

impl DefaultDirs {
    /// Every compiled-in directory server.
    pub const ALL: DefaultDirs = DefaultDirs {
        v3_authorities: true,
        bridge_authority: true,
        fallbacks: true,
    };

    /// Decides from the configured option values (empty = unset).
    pub fn from_config(
        dir_authority: bool,
        alternate_dir_authority: bool,
        alternate_bridge_authority: bool,
        fallback_dir: bool,
        use_default_fallback_dirs: bool,
    ) -> DefaultDirs {
        let defaults = !dir_authority;
        DefaultDirs {
            v3_authorities: defaults && !alternate_dir_authority,
            bridge_authority: defaults && !alternate_bridge_authority,
            fallbacks: defaults
                && !alternate_dir_authority
                && !fallback_dir
                && use_default_fallback_dirs,
        }
    }
}

/// `GETINFO config/defaults`: lines `Option "value"` (older Tor: unquoted); every compiled-in
/// `DirAuthority` and `FallbackDir` entry.
pub fn parse_config_defaults(text: &str) -> Allowlist {
    parse_config_defaults_used(text, DefaultDirs::ALL)
}

/// Like [`parse_config_defaults`], keeping only the kinds of entries Tor actually uses.
pub fn parse_config_defaults_used(text: &str, used: DefaultDirs) -> Allowlist {
    let mut list = Allowlist::new();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(' ') else {
            continue;
        };
        let value = maybe_unquote(value.trim());
        let wanted = if key.eq_ignore_ascii_case("DirAuthority") {
            // The bridge authority carries the `bridge` flag; fingerprints are hex, so no other
            // word of the line can be "bridge".
            if value.split_ascii_whitespace().any(|w| w == "bridge") {
                used.bridge_authority
            } else {
                used.v3_authorities
            }
        } else if key.eq_ignore_ascii_case("FallbackDir") {
            used.fallbacks
        } else {
            false
        };
        if wanted {
            for (a, r) in parse_dir_server_line(&value) {
                list.insert_with(a, r);
            }
        }
    }
    list
}

/// Values of `GETCONF DirAuthority` / `GETCONF FallbackDir`.
pub fn parse_dir_server_values<S: AsRef<str>>(values: &[S]) -> Allowlist {
    values
        .iter()
        .flat_map(|v| parse_dir_server_line(v.as_ref()))
        .collect()
}

/// Values of `GETCONF Bridge`.
pub fn parse_bridge_values<S: AsRef<str>>(values: &[S]) -> Allowlist {
    values
        .iter()
        .filter_map(|v| parse_bridge_line(v.as_ref()))
        .collect()
}

/// How many endpoints each source contributed (before de-duplication).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceCounts {
    pub consensus: usize,
    pub default_dirs: usize,
    pub dir_authorities: usize,
    pub fallback_dirs: usize,
    pub bridges: usize,
    pub proxies: usize,
}

/// Whether Tor runs as a relay (an `ORPort` other than 0 configured): only then does it use
/// DirPorts (see the module documentation).
pub fn server_mode<S: AsRef<str>>(orport_values: &[S]) -> bool {
    orport_values.iter().any(|v| {
        let v = v.as_ref().trim();
        !v.is_empty() && v != "0" && !v.starts_with("0 ")
    })
}

/// Everything Tor's control port says Tor may connect to, with the roles of each endpoint;
/// DirPorts only for a Tor in server mode.
pub fn fetch_allowlist(ctl: &mut Controller) -> Result<(Allowlist, SourceCounts)> {
    let mut list = Allowlist::new();
    let mut counts = SourceCounts::default();

    let ns = parse_ns_all(&ctl.getinfo_one("ns/all")?);
    counts.consensus = ns.len();
    list.extend(&ns);

    let dir_authority = ctl.getconf_values("DirAuthority")?;
    let alternate_dir = ctl.getconf_values("AlternateDirAuthority")?;
    let alternate_bridge = ctl.getconf_values("AlternateBridgeAuthority")?;
    let fallback_dir = ctl.getconf_values("FallbackDir")?;
    let use_default_fallbacks = ctl
        .getconf_values("UseDefaultFallbackDirs")?
        .first()
        .is_none_or(|v| v.trim() != "0");
    let used = DefaultDirs::from_config(
        !dir_authority.is_empty(),
        !alternate_dir.is_empty(),
        !alternate_bridge.is_empty(),
        !fallback_dir.is_empty(),
        use_default_fallbacks,
    );
    let defaults = parse_config_defaults_used(&ctl.getinfo_one("config/defaults")?, used);
    counts.default_dirs = defaults.len();
    list.extend(&defaults);

    let mut auth = parse_dir_server_values(&dir_authority);
    auth.extend(&parse_dir_server_values(&alternate_dir));
    auth.extend(&parse_dir_server_values(&alternate_bridge));
    counts.dir_authorities = auth.len();
    list.extend(&auth);

    let fallback = parse_dir_server_values(&fallback_dir);
    counts.fallback_dirs = fallback.len();
    list.extend(&fallback);

    let bridges = parse_bridge_values(&ctl.getconf_values("Bridge")?);
    counts.bridges = bridges.len();
    list.extend(&bridges);

    let mut proxies = Allowlist::new();
    for (key, port) in [
        ("HTTPSProxy", 443),
        ("Socks4Proxy", 1080),
        ("Socks5Proxy", 1080),
    ] {
        for v in ctl.getconf_values(key)? {
            if let Some(a) = parse_proxy(&v, port) {
                proxies.insert_with(a, Roles::PROXY);
            }
        }
    }
    counts.proxies = proxies.len();
    list.extend(&proxies);

    if !server_mode(&ctl.getconf_values("ORPort")?) {
        list.remove_roles(Roles::DIR_PORT);
    }
    Ok((list, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// `GETINFO ns/all` as a client with a current consensus prints it (three relays: one with a
    /// DirPort, one with an IPv6 ORPort, one in the microdescriptor form without digest).
    const NS_ALL: &str = "\
r seele AAoQ1DAR6kkoo19hBAX5K0QztNw 5pWVo+vGpyKuCYh6+tt2mGC9JDY 2026-11-26 23:01:47 104.53.221.159 9001 0
s Running Stable V2Dir Valid
w Bandwidth=1490
r CalyxInstitute14 ABG9JIWtRdmE7EFZyI/AZuXjMA4 TT0ZnCVFx2b8Hqu1cv3MaV8uGTA 2026-11-27 01:32:13 162.247.74.201 443 80
a [2610:1c0:0:5::201]:443
s Exit Fast Guard HSDir Running Stable V2Dir Valid
w Bandwidth=29000
r mdflavour AB0TKPrqnpuA7Yt3WQ7Hup2OAY8 2026-11-27 03:12:40 185.220.101.7 9000 0
a [2a0b:f4c2:2::7]:9000
s Fast Running Valid
w Bandwidth=8500
r broken ABCD 2026-11-27 03:12:40 not-an-ip 9000 0
a garbage
r short 1.2.3.4
";

    #[test]
    fn ns_all_vector() {
        let l = parse_ns_all(NS_ALL);
        let want = [
            "104.53.221.159:9001",
            "162.247.74.201:443",
            "162.247.74.201:80",
            "[2610:1c0:0:5::201]:443",
            "185.220.101.7:9000",
            "[2a0b:f4c2:2::7]:9000",
        ];
        assert_eq!(l.len(), want.len(), "{:?}", l.sorted());
        for w in want {
            assert!(l.contains(&sa(w)), "{w}");
        }
        // DirPort 0 is not an endpoint; a relay's other ports are not allowed.
        assert!(!l.contains(&sa("104.53.221.159:0")));
        assert!(!l.contains(&sa("104.53.221.159:443")));
        assert!(parse_ns_all("").is_empty());
    }

    #[test]
    fn newconsensus_event_body_uses_the_same_parser() {
        let body = "r moria1 lpXfw1/+uGEym58asExGOXAgzjE IpcU7dolas8+Q+oAzwgvZIWx7PA 2026-11-27 04:00:00 128.31.0.39 9201 9231\ns Authority Fast Running Stable V2Dir Valid\n";
        let l = parse_ns_all(body);
        assert!(l.contains(&sa("128.31.0.39:9201")));
        assert!(l.contains(&sa("128.31.0.39:9231")));
    }

    /// The complete `GETINFO config/defaults` of Debian 12's tor 0.4.9.11.
    const CONFIG_DEFAULTS: &str = include_str!("../testdata/config-defaults-0.4.9.11.txt");

    #[test]
    fn config_defaults_vector() {
        let l = parse_config_defaults(CONFIG_DEFAULTS);
        // moria1: DirPort 9231 and ORPort 9201 on 128.31.0.39.
        assert!(l.contains(&sa("128.31.0.39:9231")));
        assert!(l.contains(&sa("128.31.0.39:9201")));
        // tor26 with IPv6.
        assert!(l.contains(&sa("217.196.147.77:80")));
        assert!(l.contains(&sa("217.196.147.77:443")));
        assert!(l.contains(&sa("[2a02:16a8:662:2203::1]:443")));
        // maatuska: ORPort 80, DirPort 443 (swapped from the usual).
        assert!(l.contains(&sa("171.25.193.9:443")));
        assert!(l.contains(&sa("171.25.193.9:80")));
        // The bridge authority Serge.
        assert!(l.contains(&sa("66.111.2.131:9030")));
        assert!(l.contains(&sa("66.111.2.131:9001")));
        // Fallbacks in the new form: address without DirPort, orport=, ipv6=.
        assert!(l.contains(&sa("64.65.62.122:443")));
        assert!(l.contains(&sa("185.183.157.214:9100")));
        assert!(l.contains(&sa("[2a03:4000:1d:b7a:782f:17ff:fef0:a708]:9100")));
        assert!(l.contains(&sa("85.215.249.184:443")));
        assert!(!l.contains(&sa("64.65.62.122:80")));
        // Nothing from other options (e.g. ControlPort defaults) sneaks in.
        let authorities = CONFIG_DEFAULTS
            .lines()
            .filter(|l| l.starts_with("DirAuthority "))
            .count();
        let fallbacks = CONFIG_DEFAULTS
            .lines()
            .filter(|l| l.starts_with("FallbackDir "))
            .count();
        let fallback_v6 = CONFIG_DEFAULTS
            .lines()
            .filter(|l| l.starts_with("FallbackDir ") && l.contains("ipv6="))
            .count();
        let authority_v6 = CONFIG_DEFAULTS
            .lines()
            .filter(|l| l.starts_with("DirAuthority ") && l.contains("ipv6="))
            .count();
        assert_eq!(authorities, 10);
        assert!(fallbacks > 150);
        // Each authority: DirPort + ORPort (+ IPv6); each fallback: ORPort (+ IPv6); no overlap
        // in this vector.
        assert_eq!(
            l.len(),
            2 * authorities + authority_v6 + fallbacks + fallback_v6
        );
    }

    #[test]
    fn config_defaults_only_what_tor_uses() {
        let all = parse_config_defaults(CONFIG_DEFAULTS);
        // A private network (DirAuthority set): no compiled-in server at all.
        let none = DefaultDirs::from_config(true, false, false, false, true);
        assert!(parse_config_defaults_used(CONFIG_DEFAULTS, none).is_empty());
        // Own fallbacks only: authorities yes, default fallbacks no.
        let own_fallbacks = DefaultDirs::from_config(false, false, false, true, true);
        let l = parse_config_defaults_used(CONFIG_DEFAULTS, own_fallbacks);
        assert!(l.contains(&sa("128.31.0.39:9231")));
        assert!(l.contains(&sa("66.111.2.131:9030")));
        assert!(!l.contains(&sa("64.65.62.122:443")));
        // UseDefaultFallbackDirs 0: the same.
        assert_eq!(
            DefaultDirs::from_config(false, false, false, false, false),
            own_fallbacks
        );
        // AlternateBridgeAuthority replaces only the bridge authority (Serge).
        let alt_bridge = DefaultDirs::from_config(false, false, true, false, true);
        let l = parse_config_defaults_used(CONFIG_DEFAULTS, alt_bridge);
        assert!(!l.contains(&sa("66.111.2.131:9030")));
        assert!(l.contains(&sa("64.65.62.122:443")));
        assert_eq!(l.len() + 2, all.len());
        // Defaults everywhere: everything.
        assert_eq!(
            parse_config_defaults_used(
                CONFIG_DEFAULTS,
                DefaultDirs::from_config(false, false, false, false, true)
            ),
            all
        );
    }

    /// Recorded from a one-authority private Tor network (tor 0.4.9.11, TestingTorNetwork) in a
    /// namespace: `GETINFO ns/all` and the NEWCONSENSUS event that followed, byte for byte.
    const REAL_NS_ALL_REPLY: &[u8] = b"250+ns/all=\r\nr auth1 xxgwvYLtOd1Gvi+28l0qrr2rR0w q8lU0FNYkgu4VUfDGiOJpMtdfUI 2038-01-01 00:00:00 127.0.0.1 5001 7001\r\ns Authority Fast Guard HSDir Running Stable V2Dir Valid\r\nw Bandwidth=0\r\np reject 1-65535\r\n.\r\n250 OK\r\n";
    const REAL_NEWCONSENSUS: &[u8] = b"650+NEWCONSENSUS\r\nr auth1 xxgwvYLtOd1Gvi+28l0qrr2rR0w q8lU0FNYkgu4VUfDGiOJpMtdfUI 2038-01-01 00:00:00 127.0.0.1 5001 7001\r\ns Authority Fast Guard HSDir Running Stable V2Dir Valid\r\nw Bandwidth=0\r\np reject 1-65535\r\n.\r\n650 OK\r\n";

    #[test]
    fn real_ns_all_and_event() {
        let replies = crate::reply::parse_replies(REAL_NS_ALL_REPLY).unwrap();
        let values = crate::client::getinfo_values(&replies[0]);
        assert_eq!(values.len(), 1);
        let l = parse_ns_all(&values[0].1);
        assert_eq!(l.sorted(), vec![sa("127.0.0.1:5001"), sa("127.0.0.1:7001")]);
        let ev = crate::reply::parse_replies(REAL_NEWCONSENSUS)
            .unwrap()
            .remove(0);
        assert_eq!(ev.event_name(), Some("NEWCONSENSUS"));
        assert_eq!(parse_ns_all(ev.lines[0].data.as_deref().unwrap()), l);
    }

    #[test]
    fn old_style_fallback_and_unquoted_defaults() {
        let text = "FallbackDir 193.11.114.43:9030 orport=9001 id=12AD30E5D25AA67F519780E2111E611A455FDC89 ipv6=[2001:6b0:30:1000::99]:9050\nDirAuthority moria1 orport=9101 v3ident=D586D18309DED4CD6D57C18FDB97EFA96D330566 128.31.0.39:9131 9695 DFC3 5FFE B861 329B 9F1A B04C 4639 7020 CE31\n";
        let l = parse_config_defaults(text);
        for w in [
            "193.11.114.43:9030",
            "193.11.114.43:9001",
            "[2001:6b0:30:1000::99]:9050",
            "128.31.0.39:9131",
            "128.31.0.39:9101",
        ] {
            assert!(l.contains(&sa(w)), "{w}");
        }
        assert_eq!(l.len(), 5);
    }

    #[test]
    fn getconf_dir_authority_of_a_private_network() {
        // The lab's torrc lines, as GETCONF DirAuthority returns them.
        let values = [
            "auth1 orport=5001 v3ident=8B3E1A0D5A76C1B0A1C6D1F9E1E2C9B1D3A4F501 203.0.113.11:7001 3F2B 5C1A 9D0E 7A61 4B2C 8E9F 0A1B 2C3D 4E5F 6A7B",
            "auth2 orport=5002 v3ident=9C4F2B1E6B87D2C1B2D7E2FAF2F3DAC2E4B5A602 203.0.113.12:7002 1111 2222 3333 4444 5555 6666 7777 8888 9999 AAAA",
        ];
        let l = parse_dir_server_values(&values);
        assert_eq!(l.len(), 4);
        assert!(l.contains(&sa("203.0.113.11:7001")));
        assert!(l.contains(&sa("203.0.113.11:5001")));
        assert!(l.contains(&sa("203.0.113.12:5002")));
    }

    #[test]
    fn bridges_with_and_without_transport() {
        // Recorded from GETCONF Bridge on tor 0.4.9.11.
        let values = [
            "obfs4 192.0.2.10:443 0123456789ABCDEF0123456789ABCDEF01234567 cert=abc iat-mode=0",
            "198.51.100.7:9001",
            "[2001:db8::7]:9002 0123456789ABCDEF0123456789ABCDEF01234567",
            "203.0.113.9",
            "webtunnel [2001:db8:1::2]:443 AAAA url=https://example.invalid/x",
            "snowflake",
        ];
        let l = parse_bridge_values(&values);
        for (w, r) in [
            ("192.0.2.10:443", Roles::BRIDGE_OBFS4),
            ("198.51.100.7:9001", Roles::BRIDGE),
            ("[2001:db8::7]:9002", Roles::BRIDGE),
            ("203.0.113.9:443", Roles::BRIDGE),
            ("[2001:db8:1::2]:443", Roles::BRIDGE_OTHER_TRANSPORT),
        ] {
            assert_eq!(l.roles(&sa(w)), Some(r), "{w}");
        }
        assert_eq!(l.len(), 5);
    }

    #[test]
    fn proxies() {
        assert_eq!(
            parse_proxy("203.0.113.5:3128", 443),
            Some(sa("203.0.113.5:3128"))
        );
        assert_eq!(
            parse_proxy("203.0.113.5", 1080),
            Some(sa("203.0.113.5:1080"))
        );
        assert_eq!(
            parse_proxy("[2001:db8::5]", 1080),
            Some(sa("[2001:db8::5]:1080"))
        );
        assert_eq!(parse_proxy("proxy.example:8080", 443), None);
    }

    #[test]
    fn roles_of_endpoints() {
        let l = parse_ns_all(NS_ALL);
        let signed = Roles::IN_CONSENSUS;
        assert_eq!(
            l.roles(&sa("162.247.74.201:443")),
            Some(Roles::OR_PORT | signed)
        );
        assert_eq!(
            l.roles(&sa("162.247.74.201:80")),
            Some(Roles::DIR_PORT | signed)
        );
        // Provenance is no role: it is never named, and Roles::from_bits
        // keeps it across processes.
        assert_eq!(signed.names(), Vec::<&str>::new());
        assert_eq!(
            Roles::from_bits((Roles::OR_PORT | signed).bits()),
            Roles::OR_PORT | signed
        );
        // A client never uses DirPorts: they go, ORPorts stay.
        let mut client = l.clone();
        client.remove_roles(Roles::DIR_PORT);
        assert_eq!(client.len(), l.len() - 1);
        assert!(!client.contains(&sa("162.247.74.201:80")));
        // One endpoint can hold two roles (maatuska's ORPort 80 / another's DirPort 80).
        let mut both = Allowlist::new();
        both.insert_with(sa("171.25.193.9:80"), Roles::OR_PORT);
        both.insert_with(sa("171.25.193.9:80"), Roles::DIR_PORT);
        assert_eq!(
            both.roles(&sa("171.25.193.9:80")),
            Some(Roles::OR_PORT | Roles::DIR_PORT)
        );
        both.remove_roles(Roles::DIR_PORT);
        assert_eq!(both.roles(&sa("171.25.193.9:80")), Some(Roles::OR_PORT));
        assert!(Roles::OR_PORT.expects_tls() && Roles::BRIDGE.expects_tls());
        assert!(!Roles::BRIDGE_OBFS4.expects_tls() && !Roles::PROXY.expects_tls());
        assert_eq!(
            (Roles::OR_PORT | Roles::PROXY).names(),
            vec!["orport", "proxy"]
        );
    }

    #[test]
    fn server_mode_from_orport() {
        assert!(!server_mode::<&str>(&[]));
        assert!(!server_mode(&["0"]));
        assert!(!server_mode(&[""]));
        assert!(server_mode(&["9001"]));
        assert!(server_mode(&["0", "[::]:9001 IPv6Only"]));
    }

    #[test]
    fn allowlist_semantics() {
        let mut a = Allowlist::new();
        assert!(a.is_empty());
        a.insert(sa("[2001:db8::1]:443"));
        a.insert(sa("1.2.3.4:0"));
        assert_eq!(a.len(), 1);
        // Flow info and scope id of a looked-up endpoint do not matter.
        let with_flow =
            SocketAddr::V6(SocketAddrV6::new("2001:db8::1".parse().unwrap(), 443, 7, 3));
        assert!(a.contains(&with_flow));
        // IPv4-mapped addresses are their IPv4 endpoint.
        a.insert(sa("[::ffff:5.6.7.8]:9001"));
        assert!(a.contains(&sa("5.6.7.8:9001")));
        assert!(a.contains(&sa("[::ffff:5.6.7.8]:9001")));
        let mut b = Allowlist::new();
        b.insert(sa("1.2.3.4:443"));
        b.extend(&a);
        assert_eq!(b.len(), 3);
        assert!(!b.contains(&sa("1.2.3.4:444")));
        assert_eq!(
            b.sorted(),
            vec![
                sa("1.2.3.4:443"),
                sa("5.6.7.8:9001"),
                sa("[2001:db8::1]:443")
            ]
        );
    }

    #[test]
    fn many_endpoints_round_trip() {
        let all: Vec<SocketAddr> = (0..20_000u32)
            .map(|i| {
                if i % 2 == 0 {
                    SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
                        (i % 60000 + 1) as u16,
                    )
                } else {
                    SocketAddr::new(
                        IpAddr::V6(Ipv6Addr::from(0x2001_0db8u128 << 96 | u128::from(i))),
                        443,
                    )
                }
            })
            .collect();
        let list: Allowlist = all.iter().copied().collect();
        assert_eq!(list.len(), all.len());
        assert!(all.iter().all(|a| list.contains(a)));
        let mut want = all.clone();
        want.sort();
        assert_eq!(list.sorted(), want);
        // Neighbours (port +1, address +1) are not in.
        for a in all.iter().take(100) {
            let mut b = *a;
            b.set_port(a.port().wrapping_add(1).max(1));
            if !all.contains(&b) {
                assert!(!list.contains(&b), "{b}");
            }
        }
    }
}
