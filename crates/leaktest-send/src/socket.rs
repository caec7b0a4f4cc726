//! The two ways probes leave the host, both sending whole batches with one
//! `sendmmsg(2)` call over buffers allocated once:
//!
//! * [`PacketSender`]: an AF_PACKET socket bound to the egress interface that
//!   sends complete Ethernet frames (or bare IP packets on links without an
//!   Ethernet header). It bypasses the local IP stack and firewall, as a
//!   workstation's packets reach its gateway. No `PACKET_QDISC_BYPASS`:
//!   frames must stay visible to a capture on the sending interface.
//! * [`RawIpSender`]: an `IPPROTO_RAW` socket (header included) that sends
//!   bare IP packets through the local stack, its routing and its firewall:
//!   a gateway testing its own output path. A packet the local firewall drops
//!   makes the send fail with `EPERM`; that probe is counted as refused
//!   locally and the batch goes on.
//!
//! A partial send resumes at the first unsent message. Transient `ENOBUFS`
//! (a queue dropped the frame) and `EAGAIN` (send buffer full for the 1 s
//! send timeout) back off briefly and retry the same frame, a bounded
//! number of times.

use crate::Error;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Consecutive retries without progress before a send gives up (≈ 2 s).
const MAX_STALLS: u32 = 220;

/// Requested socket send buffer: room for a few thousand small frames.
const SNDBUF: libc::c_int = 4 << 20;

/// Preallocated frame buffers and `sendmmsg` headers for one batch.
pub struct Batch {
    buf: Vec<u8>,
    slot: usize,
    lens: Vec<usize>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iov` and `hdrs` only ever point into this
// batch's own heap buffers (and the sender's addresses during a send); they
// are rewritten before every send and never dereferenced elsewhere.
unsafe impl Send for Batch {}

impl Batch {
    /// A batch of up to `capacity` frames of at most `slot` bytes each.
    pub fn new(capacity: usize, slot: usize) -> Batch {
        let capacity = capacity.max(1);
        let iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: mmsghdr is plain data; all-zero is a valid (empty) value.
        let hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Batch {
            buf: vec![0u8; capacity * slot],
            slot,
            lens: Vec::with_capacity(capacity),
            iov: vec![iov; capacity],
            hdrs: vec![hdr; capacity],
        }
    }

    pub fn capacity(&self) -> usize {
        self.iov.len()
    }

    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.lens.len() == self.capacity()
    }

    pub fn clear(&mut self) {
        self.lens.clear();
    }

    /// Lets `write` fill the next slot and return the frame length; a length
    /// of 0 (nothing to send) leaves the batch unchanged. Returns whether a
    /// frame was added. Does nothing once the batch is full.
    pub fn push_with(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if self.is_full() {
            return false;
        }
        let start = self.lens.len() * self.slot;
        let len = write(&mut self.buf[start..start + self.slot]).min(self.slot);
        if len == 0 {
            return false;
        }
        self.lens.push(len);
        true
    }

    /// Frame `i` as it will be sent.
    pub fn frame(&self, i: usize) -> &[u8] {
        let start = i * self.slot;
        &self.buf[start..start + self.lens[i]]
    }

    /// Points the headers at the frames; `name(frame)` gives each message's
    /// destination address (or null).
    fn prepare(&mut self, mut name: impl FnMut(&[u8]) -> (*const libc::c_void, libc::socklen_t)) {
        for i in 0..self.lens.len() {
            let start = i * self.slot;
            let len = self.lens[i];
            self.iov[i].iov_base = self.buf[start..].as_mut_ptr().cast();
            self.iov[i].iov_len = len;
            let (addr, addrlen) = name(&self.buf[start..start + len]);
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = addr as *mut libc::c_void;
            h.msg_hdr.msg_namelen = addrlen;
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }
}

/// What became of one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Frames the kernel accepted.
    pub sent: usize,
    /// Frames the local stack refused (raw IP: firewall `EPERM`/`EACCES`,
    /// no route for this particular packet).
    pub refused: usize,
    /// Retries after `ENOBUFS`/`EAGAIN`.
    pub retries: u64,
}

/// A socket that sends a [`Batch`] of frames.
pub trait FrameSender: Send {
    /// Sends every frame of `batch`, resuming after partial sends.
    fn send_batch(&mut self, batch: &mut Batch) -> Result<SendOutcome, Error>;
    /// Whether frames must start with an Ethernet header.
    fn wants_ethernet(&self) -> bool;
    /// `"packet"` or `"raw"`.
    fn kind(&self) -> &'static str;
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The send loop shared by both senders. `refusable(errno)` says which
/// errors mean "this one packet was refused locally".
fn send_all(
    fd: RawFd,
    batch: &mut Batch,
    refusable: impl Fn(i32) -> bool,
) -> Result<SendOutcome, Error> {
    let n = batch.len();
    let mut out = SendOutcome::default();
    let mut off = 0usize;
    let mut stalls = 0u32;
    while off < n {
        // SAFETY: hdrs[off..n] were prepared to point at live buffers of this
        // batch and at addresses that outlive the call.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                batch.hdrs[off..].as_mut_ptr(),
                (n - off) as libc::c_uint,
                0,
            )
        };
        if r > 0 {
            off += r as usize;
            out.sent += r as usize;
            stalls = 0;
            continue;
        }
        let e = if r == 0 { libc::EAGAIN } else { errno() };
        match e {
            libc::EINTR => {}
            libc::ENOBUFS | libc::EAGAIN => {
                stalls += 1;
                out.retries += 1;
                if stalls > MAX_STALLS {
                    return Err(Error::Stalled {
                        errno: io::Error::from_raw_os_error(e).to_string(),
                    });
                }
                // 20 µs doubling up to 10 ms.
                let us = (20u64 << stalls.min(9)).min(10_000);
                std::thread::sleep(Duration::from_micros(us));
            }
            e if refusable(e) => {
                off += 1;
                out.refused += 1;
                stalls = 0;
            }
            libc::EMSGSIZE => {
                return Err(Error::FrameTooBig(batch.lens[off]));
            }
            _ => return Err(Error::Send(io::Error::from_raw_os_error(e))),
        }
    }
    Ok(out)
}

fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: v points at a live T of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Large send buffer (forced when privileged) and a 1 s send timeout, so
/// that a wedged interface gives `EAGAIN` instead of blocking forever.
fn tune_send(fd: &OwnedFd) -> io::Result<()> {
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &SNDBUF).is_err() {
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &SNDBUF)?;
    }
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &tv)
}

fn open_error(e: io::Error, what: &'static str) -> Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Permission(what),
        _ => Error::Socket(what, e),
    }
}

fn is_refusal(e: i32) -> bool {
    matches!(
        e,
        libc::EPERM | libc::EACCES | libc::ENETUNREACH | libc::EHOSTUNREACH
    )
}

/// Fails with [`Error::Permission`] unless this process may open the
/// sockets of `kind` (`"packet"`, or `"raw"` of IPv4, or IPv6 with `ipv6`), so a
/// run can refuse before it resolves anything or sends a single frame.
pub fn check_privilege(kind: &str, ipv6: bool) -> Result<(), Error> {
    let r = match kind {
        "packet" => socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
            .map_err(|e| open_error(e, "an AF_PACKET socket")),
        _ => socket(
            if ipv6 { libc::AF_INET6 } else { libc::AF_INET },
            libc::SOCK_RAW,
            libc::IPPROTO_RAW,
        )
        .map_err(|e| open_error(e, "a raw IP socket")),
    };
    r.map(drop)
}

/// AF_PACKET sender bound to one interface.
pub struct PacketSender {
    fd: OwnedFd,
    ethernet: bool,
    addr4: libc::sockaddr_ll,
    addr6: libc::sockaddr_ll,
}

impl PacketSender {
    /// Opens the socket on interface `ifindex`. `ethernet` says whether the
    /// link carries Ethernet frames (else frames are bare IP packets).
    pub fn open(ifindex: u32, ethernet: bool) -> Result<PacketSender, Error> {
        // Protocol 0: the socket receives nothing, it only sends.
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
            .map_err(|e| open_error(e, "an AF_PACKET socket"))?;
        let addr = |proto: u16| {
            // SAFETY: sockaddr_ll is plain data.
            let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            a.sll_family = libc::AF_PACKET as u16;
            a.sll_protocol = proto.to_be();
            a.sll_ifindex = ifindex as i32;
            a
        };
        let bind = addr(0);
        // SAFETY: valid fd and a sockaddr_ll of the right size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&bind as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(Error::Socket(
                "an AF_PACKET socket (bind)",
                io::Error::last_os_error(),
            ));
        }
        tune_send(&fd).map_err(|e| Error::Socket("an AF_PACKET socket (options)", e))?;
        Ok(PacketSender {
            fd,
            ethernet,
            addr4: addr(libc::ETH_P_IP as u16),
            addr6: addr(libc::ETH_P_IPV6 as u16),
        })
    }
}

impl FrameSender for PacketSender {
    fn send_batch(&mut self, batch: &mut Batch) -> Result<SendOutcome, Error> {
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let (a4, a6) = (
            &self.addr4 as *const libc::sockaddr_ll as *const libc::c_void,
            &self.addr6 as *const libc::sockaddr_ll as *const libc::c_void,
        );
        if self.ethernet {
            // The bound interface and the frame's own EtherType are enough.
            batch.prepare(|_| (std::ptr::null(), 0));
        } else {
            // No link header: the protocol comes from the address.
            batch.prepare(|f| match f.first().map(|b| b >> 4) {
                Some(6) => (a6, len),
                _ => (a4, len),
            });
        }
        send_all(self.fd.as_raw_fd(), batch, |e| {
            matches!(e, libc::EPERM | libc::EACCES)
        })
    }

    fn wants_ethernet(&self) -> bool {
        self.ethernet
    }

    fn kind(&self) -> &'static str {
        "packet"
    }
}

/// Raw IP sender (header included), through the local stack: each packet
/// goes to the destination written in its own IP header (a `lan` probe to
/// its LAN address, everything else to the target), routed and filtered as
/// the host's own traffic to that address would be.
pub struct RawIpSender {
    fd: OwnedFd,
    family: libc::c_int,
    /// The interface that link-scope IPv6 destinations (fe80::/10, ff02::/16
    /// and narrower multicast) are sent on: they carry no route, so the
    /// socket address must name it (RFC 4007 zone; 0 = none).
    scope: u32,
    /// One socket address per frame of the batch being sent.
    names: Vec<libc::sockaddr_in6>,
}

impl RawIpSender {
    /// Opens an `IPPROTO_RAW` socket of `family` (`AF_INET` when
    /// `ipv6` is false). With `iface` the socket is bound to that device
    /// (`SO_BINDTODEVICE`). `scope` is the interface index link-scope IPv6
    /// destinations are sent on (the uplink: where the target's route
    /// leaves). `SO_BROADCAST` is set: a broadcast destination is a probe
    /// like any other (without it the kernel refuses with `EACCES`,
    /// `raw_sendmsg`).
    pub fn open(ipv6: bool, iface: Option<&str>, scope: u32) -> Result<RawIpSender, Error> {
        let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
        let fd = socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW)
            .map_err(|e| open_error(e, "a raw IP socket"))?;
        if let Some(name) = iface {
            // SAFETY: name points at name.len() readable bytes.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    name.as_ptr().cast(),
                    name.len() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(Error::Socket(
                    "a raw IP socket (SO_BINDTODEVICE)",
                    io::Error::last_os_error(),
                ));
            }
        }
        tune_send(&fd).map_err(|e| Error::Socket("a raw IP socket (options)", e))?;
        setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_BROADCAST,
            &1 as &libc::c_int,
        )
        .map_err(|e| Error::Socket("a raw IP socket (SO_BROADCAST)", e))?;
        Ok(RawIpSender {
            fd,
            family,
            scope,
            names: Vec::new(),
        })
    }
}

/// The socket address a raw IP packet is sent to: the destination in its
/// own header, with `scope` as the zone of a link-scope IPv6 address.
/// `None` for a packet too short to hold its header's addresses.
fn raw_destination(family: libc::c_int, packet: &[u8], scope: u32) -> Option<libc::sockaddr_in6> {
    // A sockaddr_in6 is large enough for either family.
    // SAFETY: plain data.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    if family == libc::AF_INET {
        let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
        // SAFETY: sockaddr_in fits inside sockaddr_in6 and has no stricter alignment.
        let sin = unsafe { &mut *(&mut sa as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes(dst);
    } else {
        let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_addr.s6_addr = dst;
        let a = std::net::Ipv6Addr::from(dst);
        let link_scope =
            a.is_unicast_link_local() || (a.is_multicast() && (a.octets()[1] & 0x0f) <= 2);
        if link_scope {
            sa.sin6_scope_id = scope;
        }
    }
    Some(sa)
}

impl FrameSender for RawIpSender {
    fn send_batch(&mut self, batch: &mut Batch) -> Result<SendOutcome, Error> {
        let len = if self.family == libc::AF_INET {
            std::mem::size_of::<libc::sockaddr_in>()
        } else {
            std::mem::size_of::<libc::sockaddr_in6>()
        } as libc::socklen_t;
        self.names.clear();
        for i in 0..batch.len() {
            // Every frame the builders write holds a whole IP header; one
            // that did not would go to the unspecified address, and the
            // kernel's EINVAL for its short header ends the run with an
            // error (never a silent skip).
            let sa =
                raw_destination(self.family, batch.frame(i), self.scope).unwrap_or_else(|| {
                    // SAFETY: plain data.
                    let mut z: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                    z.sin6_family = self.family as libc::sa_family_t;
                    z
                });
            self.names.push(sa);
        }
        let names = &self.names;
        let mut i = 0;
        batch.prepare(|_| {
            let a = (&names[i] as *const libc::sockaddr_in6).cast::<libc::c_void>();
            i += 1;
            (a, len)
        });
        send_all(self.fd.as_raw_fd(), batch, is_refusal)
    }

    fn wants_ethernet(&self) -> bool {
        false
    }

    fn kind(&self) -> &'static str {
        "raw"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_packets_go_to_their_own_header_destination() {
        // IPv4: bytes 16..20 of the header.
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[255, 255, 255, 255]);
        let sa = raw_destination(libc::AF_INET, &v4, 7).unwrap();
        // SAFETY: the AF_INET branch wrote a sockaddr_in.
        let sin = unsafe { &*(&sa as *const libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
        assert_eq!(sin.sin_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(sin.sin_addr.s_addr.to_ne_bytes(), [255; 4]);
        assert!(raw_destination(libc::AF_INET, &v4[..19], 7).is_none());
        // IPv6: bytes 24..40; link-scope destinations get the zone.
        let v6 = |dst: &str| {
            let mut p = [0u8; 40];
            p[0] = 0x60;
            let a: std::net::Ipv6Addr = dst.parse().unwrap();
            p[24..40].copy_from_slice(&a.octets());
            raw_destination(libc::AF_INET6, &p, 7).unwrap()
        };
        for (dst, zone) in [
            ("fe80::1", 7),
            ("ff02::fb", 7),
            ("ff01::1", 7),
            ("ff05::2", 0),
            ("ff0e::1", 0),
            ("2001:db8::1", 0),
            ("fd00::1", 0),
        ] {
            let sa = v6(dst);
            assert_eq!(sa.sin6_scope_id, zone, "{dst}");
            assert_eq!(
                std::net::Ipv6Addr::from(sa.sin6_addr.s6_addr),
                dst.parse::<std::net::Ipv6Addr>().unwrap()
            );
        }
    }

    #[test]
    fn batch_slots_and_skips() {
        let mut b = Batch::new(3, 8);
        assert!(b.is_empty());
        assert!(b.push_with(|s| {
            s[..3].copy_from_slice(b"abc");
            3
        }));
        assert!(!b.push_with(|_| 0), "a zero length is skipped");
        assert!(b.push_with(|s| {
            s.fill(7);
            100 // clamped to the slot
        }));
        assert!(b.push_with(|_| 1));
        assert!(b.is_full());
        assert!(!b.push_with(|_| 1));
        assert_eq!(b.frame(0), b"abc");
        assert_eq!(b.frame(1), &[7u8; 8]);
        assert_eq!(b.len(), 3);
        b.clear();
        assert!(b.is_empty());
    }

    /// A connected pair of AF_UNIX datagram sockets: a stand-in network.
    fn datagram_socketpair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptors we own.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn sendmmsg_over_a_socketpair_delivers_every_frame() {
        // A datagram socketpair stands in for the network: it checks the
        // header plumbing and partial-send resumption without privileges.
        let (a, b) = datagram_socketpair();
        let mut batch = Batch::new(64, 32);
        for i in 0..64u8 {
            batch.push_with(|s| {
                s[0] = i;
                s[1] = 0xa5;
                1 + (i as usize % 31)
            });
        }
        batch.prepare(|_| (std::ptr::null(), 0));
        let out = send_all(a.as_raw_fd(), &mut batch, |_| false).unwrap();
        assert_eq!(out.sent, 64);
        let mut buf = [0u8; 64];
        for i in 0..64u8 {
            // SAFETY: buf is writable.
            let n = unsafe {
                libc::recv(
                    b.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            assert_eq!(n as usize, 1 + (i as usize % 31));
            assert_eq!(buf[0], i);
        }
    }

    #[test]
    fn refused_messages_are_skipped_and_counted() {
        // Sending on a socket whose peer is gone fails every message with
        // ENOTCONN; treating it as a refusal must skip each one once.
        let (a, b) = datagram_socketpair();
        drop(b);
        let mut batch = Batch::new(5, 4);
        for _ in 0..5 {
            batch.push_with(|_| 4);
        }
        batch.prepare(|_| (std::ptr::null(), 0));
        let out = send_all(a.as_raw_fd(), &mut batch, |e| {
            e == libc::ENOTCONN || e == libc::ECONNREFUSED
        })
        .unwrap();
        assert_eq!(
            out,
            SendOutcome {
                sent: 0,
                refused: 5,
                retries: 0
            }
        );
        batch.prepare(|_| (std::ptr::null(), 0));
        let e = send_all(a.as_raw_fd(), &mut batch, |_| false).unwrap_err();
        assert!(matches!(e, Error::Send(_)), "{e}");
    }
}
