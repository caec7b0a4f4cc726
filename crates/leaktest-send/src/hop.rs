//! The first-hop check: is the target the first router itself?
//!
//! A target routed through a gateway may still be *the gateway*: another of
//! its addresses (its uplink address, say). Probes to it are delivered to
//! the gateway and never forwarded, so a gateway that forwards everything in
//! the clear still gives a PASS. The routing table of the probing host
//! cannot tell; the network can. Before the sweep, one ICMP echo request
//! is sent to the target with a TTL (IPv6: hop limit) of 1, and the answer
//! says where the target is:
//!
//! * an echo reply from the target, or an ICMP error sourced from the target
//!   and quoting the request: the packet reached the target without crossing
//!   a router, so the target is the first hop ([`FirstHop::Target`], refused);
//! * Time Exceeded quoting the request (RFC 792; RFC 4443 section 3.3): a
//!   router decremented the TTL to 0, so the target is beyond it
//!   ([`FirstHop::Beyond`]);
//! * nothing within the wait, or another error from another address (a
//!   gateway whose firewall drops or rejects it): the check cannot tell
//!   ([`FirstHop::Silent`]), and the sweep goes on.
//!
//! It runs before AF_PACKET sweeps from a host behind the gateway. Raw-socket
//! sweeps test a host's own output path, whose first hop is beyond the
//! watched uplink; they are checked against that uplink instead.
//!
//! The request is the catalogue's own ICMP echo probe, marker and all, so if
//! it ever leaves a gateway (a bridge that does not decrement the TTL) the
//! watcher attributes it like any probe. Source addresses of replies are
//! chosen by the answering kernel: for a locally delivered packet Linux
//! answers from the address the packet was sent to (`icmp_send`, measured
//! here with nft `reject`), which is why an error from the target counts.

use crate::path::Path;
use crate::Error;
use leaktest_wire::{Family, ProbeBuilder, ProbeSpec, RunKey, Suite};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for an answer. A first hop on the same link answers
/// within a millisecond; a tenth of a second per try covers a busy one. The
/// request is sent [`TRIES`] times, so a wait costs at most 0.3 s per family.
pub const WAIT_PER_TRY: Duration = Duration::from_millis(100);
/// Requests sent (the same probe each time) before calling the hop silent.
pub const TRIES: u32 = 3;

/// What the first-hop check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstHop {
    /// Time Exceeded from `router`: the target lies beyond it.
    Beyond { router: IpAddr },
    /// The target itself answered a packet that could not have crossed a
    /// router: it is the first hop.
    Target { answer: String },
    /// No answer that tells (`why` says what came, if anything).
    Silent { why: String },
}

impl FirstHop {
    /// One line for the report.
    pub fn describe(&self) -> String {
        match self {
            FirstHop::Beyond { router } => {
                format!("beyond the first hop (time exceeded from {router})")
            }
            FirstHop::Target { answer } => format!("the target is the first hop ({answer})"),
            FirstHop::Silent { why } => format!("unknown: {why}"),
        }
    }
}

/// Runs the check for `path` (the target and interface of one family),
/// with the catalogue's echo probe signed by `key`. `stop` ends the wait
/// early. Errors are socket errors (the caller has CAP_NET_RAW already).
pub fn check_first_hop(
    path: &Path,
    key: RunKey,
    stop: Option<&AtomicBool>,
) -> Result<FirstHop, Error> {
    let family = match path.target {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    };
    let request = echo_request(path, key, family)?;
    let (domain, proto) = match family {
        Family::V4 => (Domain::IPV4, Protocol::ICMPV4),
        Family::V6 => (Domain::IPV6, Protocol::ICMPV6),
    };
    let sock = Socket::new(domain, Type::RAW, Some(proto))
        .map_err(|e| Error::Socket("a raw ICMP socket (first-hop check)", e))?;
    let opt = |e| Error::Socket("a raw ICMP socket (first-hop check options)", e);
    match family {
        Family::V4 => sock.set_ttl_v4(1).map_err(opt)?,
        Family::V6 => sock.set_unicast_hops_v6(1).map_err(opt)?,
    }
    sock.bind_device(Some(path.iface.as_bytes())).map_err(opt)?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(opt)?;
    let dst = SockAddr::from(SocketAddr::new(path.target, 0));
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    let mut seen: Option<String> = None;
    for _ in 0..TRIES {
        match sock.send_to(&request, &dst) {
            Ok(_) => {}
            // This host's own firewall (a workstation's output policy) refused it:
            // the sweep itself goes by AF_PACKET, under the firewall.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Ok(FirstHop::Silent {
                    why: "this host's firewall refused the echo request".into(),
                })
            }
            Err(e) => return Err(Error::Send(e)),
        }
        let deadline = Instant::now() + WAIT_PER_TRY;
        while Instant::now() < deadline {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                return Ok(FirstHop::Silent {
                    why: "interrupted".into(),
                });
            }
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::Interrupted =>
                {
                    continue
                }
                Err(e) => return Err(Error::Io(e)),
            };
            // SAFETY: recv_from initialised the first n bytes.
            let data: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), n) };
            let Some(src) = from.as_socket().map(|s| s.ip()) else {
                continue;
            };
            let icmp = match family {
                // Raw IPv4 sockets deliver the IP header; IPv6 ones do not.
                Family::V4 => match data.first() {
                    Some(b) if data.len() >= usize::from(b & 0x0f) * 4 => {
                        &data[usize::from(b & 0x0f) * 4..]
                    }
                    _ => continue,
                },
                Family::V6 => data,
            };
            match judge(family, path.target, &request, src, icmp) {
                Some(Answer::Decisive(h)) => return Ok(h),
                Some(Answer::Other(what)) => seen = Some(what),
                None => {}
            }
        }
    }
    Ok(FirstHop::Silent {
        why: seen.unwrap_or_else(|| {
            format!(
                "no answer to {TRIES} echo requests with {} 1 (a firewall dropped them or the \
                 hop does not answer)",
                match family {
                    Family::V4 => "TTL",
                    Family::V6 => "hop limit",
                }
            )
        }),
    })
}

/// The ICMP part of the catalogue's echo request probe for this path.
fn echo_request(path: &Path, key: RunKey, family: Family) -> Result<Vec<u8>, Error> {
    let echo = match family {
        Family::V4 => 8,
        Family::V6 => 128,
    };
    let spec = ProbeSpec::all(family, Suite::Icmp)
        .find(|s| s.icmp_type() == Some(echo))
        .expect("the icmp suite has an echo request");
    let b = ProbeBuilder::new(key, path.endpoints()?, None);
    let mut frame = vec![0u8; b.frame_len(&spec)];
    let n = b.write(&spec, &mut frame);
    frame.truncate(n);
    let ip_len = match family {
        Family::V4 => usize::from(frame[0] & 0x0f) * 4,
        Family::V6 => 40,
    };
    Ok(frame[ip_len..].to_vec())
}

enum Answer {
    Decisive(FirstHop),
    Other(String),
}

/// What one received ICMP message says about our `request` to `target`.
/// `icmp` starts at the ICMP header; `None` if it is not about our request.
fn judge(
    family: Family,
    target: IpAddr,
    request: &[u8],
    src: IpAddr,
    icmp: &[u8],
) -> Option<Answer> {
    if icmp.len() < 8 || request.len() < 8 {
        return None;
    }
    let (echo_reply, time_exceeded, is_error) = match family {
        Family::V4 => (0u8, 11u8, matches!(icmp[0], 3 | 4 | 5 | 11 | 12)),
        Family::V6 => (129u8, 3u8, icmp[0] < 128),
    };
    if icmp[0] == echo_reply {
        // Identifier and sequence number (RFC 792, RFC 4443 section 4.2).
        if icmp[4..8] != request[4..8] || src != target {
            return None;
        }
        return Some(Answer::Decisive(FirstHop::Target {
            answer: format!(
                "it sent an echo reply to a request with {} 1",
                ttl_name(family)
            ),
        }));
    }
    if !is_error || !quotes(family, target, request, &icmp[8..]) {
        return None;
    }
    if icmp[0] == time_exceeded {
        return Some(Answer::Decisive(FirstHop::Beyond { router: src }));
    }
    if src == target {
        return Some(Answer::Decisive(FirstHop::Target {
            answer: format!(
                "it sent ICMP type {} code {} about a request with {} 1",
                icmp[0],
                icmp[1],
                ttl_name(family)
            ),
        }));
    }
    Some(Answer::Other(format!(
        "{src} answered with ICMP type {} code {}, which does not say where the target is",
        icmp[0], icmp[1]
    )))
}

fn ttl_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "TTL",
        Family::V6 => "hop limit",
    }
}

/// True if `quoted` (the invoking packet inside an ICMP error) is our
/// request to `target`: destination, protocol and echo identifier/sequence.
fn quotes(family: Family, target: IpAddr, request: &[u8], quoted: &[u8]) -> bool {
    let (dst, proto, rest) = match family {
        Family::V4 => {
            if quoted.len() < 20 {
                return false;
            }
            let ihl = usize::from(quoted[0] & 0x0f) * 4;
            if quoted.len() < ihl + 8 {
                return false;
            }
            let d: [u8; 4] = quoted[16..20].try_into().unwrap();
            (IpAddr::from(d), quoted[9], &quoted[ihl..])
        }
        Family::V6 => {
            if quoted.len() < 48 {
                return false;
            }
            let d: [u8; 16] = quoted[24..40].try_into().unwrap();
            (IpAddr::from(d), quoted[6], &quoted[40..])
        }
    };
    dst == target && proto == family.icmp_protocol() && rest[..8] == request[..8]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Vec<u8> {
        vec![8, 0, 0xab, 0xcd, 0x12, 0x34, 0x56, 0x78, 1, 2, 3]
    }

    fn quoted_v4(dst: [u8; 4], req: &[u8]) -> Vec<u8> {
        let mut q = vec![0u8; 20];
        q[0] = 0x45;
        q[8] = 0; // TTL 0 after the decrement
        q[9] = 1;
        q[16..20].copy_from_slice(&dst);
        q.extend_from_slice(&req[..8]);
        q
    }

    fn error_v4(t: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
        let mut m = vec![t, code, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(quoted);
        m
    }

    const TARGET: [u8; 4] = [192, 0, 2, 1];

    #[test]
    fn time_exceeded_quoting_the_request_means_beyond() {
        let req = request();
        let m = error_v4(11, 0, &quoted_v4(TARGET, &req));
        let gw: IpAddr = "10.152.152.10".parse().unwrap();
        match judge(Family::V4, IpAddr::from(TARGET), &req, gw, &m) {
            Some(Answer::Decisive(FirstHop::Beyond { router })) => assert_eq!(router, gw),
            _ => panic!("time exceeded must say beyond"),
        }
    }

    #[test]
    fn an_echo_reply_or_error_from_the_target_means_first_hop() {
        let req = request();
        let mut reply = req.clone();
        reply[0] = 0;
        let t = IpAddr::from(TARGET);
        assert!(matches!(
            judge(Family::V4, t, &req, t, &reply),
            Some(Answer::Decisive(FirstHop::Target { .. }))
        ));
        // Port/protocol unreachable or admin-prohibited sourced from the target.
        let m = error_v4(3, 13, &quoted_v4(TARGET, &req));
        assert!(matches!(
            judge(Family::V4, t, &req, t, &m),
            Some(Answer::Decisive(FirstHop::Target { .. }))
        ));
        // The same error from the gateway's inside address tells nothing.
        let gw: IpAddr = "10.152.152.10".parse().unwrap();
        assert!(matches!(
            judge(Family::V4, t, &req, gw, &m),
            Some(Answer::Other(_))
        ));
    }

    #[test]
    fn answers_about_other_packets_are_ignored() {
        let req = request();
        let t = IpAddr::from(TARGET);
        // Another echo reply (other identifier).
        let mut reply = req.clone();
        reply[0] = 0;
        reply[4] ^= 1;
        assert!(judge(Family::V4, t, &req, t, &reply).is_none());
        // Time exceeded about a packet to another destination.
        let m = error_v4(11, 0, &quoted_v4([198, 51, 100, 1], &req));
        assert!(judge(Family::V4, t, &req, t, &m).is_none());
        // Truncated.
        assert!(judge(Family::V4, t, &req, t, &[11, 0, 0]).is_none());
    }

    #[test]
    fn ipv6_time_exceeded_and_echo_reply() {
        let mut req = request();
        req[0] = 128;
        let t: IpAddr = "2001:db8::1".parse().unwrap();
        let IpAddr::V6(t6) = t else { unreachable!() };
        let mut q = vec![0u8; 40];
        q[0] = 0x60;
        q[6] = 58;
        q[24..40].copy_from_slice(&t6.octets());
        q.extend_from_slice(&req[..8]);
        let mut m = vec![3, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&q);
        let gw: IpAddr = "fd19:c33d:88bc::10".parse().unwrap();
        assert!(matches!(
            judge(Family::V6, t, &req, gw, &m),
            Some(Answer::Decisive(FirstHop::Beyond { .. }))
        ));
        let mut reply = req.clone();
        reply[0] = 129;
        assert!(matches!(
            judge(Family::V6, t, &req, t, &reply),
            Some(Answer::Decisive(FirstHop::Target { .. }))
        ));
    }
}
