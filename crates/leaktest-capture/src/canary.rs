//! Sending canary frames: an `AF_PACKET` socket on the captured interface.
//!
//! The frame format and the ledger of sent and seen canaries are
//! `leaktest_wire::canary`'s. A canary goes out through an `AF_PACKET`
//! socket *without* `PACKET_QDISC_BYPASS`, so it passes the same transmit
//! path (qdisc, the taps) as every other outgoing frame and the capture sees
//! it as outbound.

use leaktest_wire::canary::{CanaryKey, CanaryLedger, CANARY_DST_MAC, CANARY_ETHERTYPE};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Why canaries could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("interface {0} has no Ethernet address")]
    NoMac(String),
    #[error("canary socket on {iface}: {source}")]
    Socket { iface: String, source: io::Error },
    #[error("sending canary {id} on {iface}: {source}")]
    Send {
        iface: String,
        id: u64,
        source: io::Error,
    },
    #[error("no random source for the canary key: {0}")]
    Random(String),
}

/// A new canary ledger for a session sending from `src`, with a random key
/// and nonce.
pub fn new_ledger(src: [u8; 6]) -> Result<CanaryLedger, CanaryError> {
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| CanaryError::Random(e.to_string()))?;
    let nonce = getrandom::u64().map_err(|e| CanaryError::Random(e.to_string()))?;
    Ok(CanaryLedger::new(CanaryKey::new(src, key, nonce)))
}

/// An `AF_PACKET` socket that sends canary frames on one interface.
#[derive(Debug)]
pub struct CanaryInjector {
    fd: OwnedFd,
    iface: String,
    /// The interface sent on; follows a re-created one (see `send_frame`).
    ifindex: std::sync::atomic::AtomicU32,
    mac: [u8; 6],
}

impl CanaryInjector {
    /// Opens the socket on `iface` (needs root or CAP_NET_RAW).
    pub fn open(iface: &str) -> Result<CanaryInjector, CanaryError> {
        let info = crate::iface::IfaceInfo::read(iface)
            .ok_or_else(|| CanaryError::NoSuchInterface(iface.to_string()))?;
        let mac = info
            .mac
            .ok_or_else(|| CanaryError::NoMac(iface.to_string()))?;
        // Protocol 0: this socket receives nothing, it only sends.
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(CanaryError::Socket {
                iface: iface.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(CanaryInjector {
            fd,
            iface: iface.to_string(),
            ifindex: std::sync::atomic::AtomicU32::new(info.ifindex),
            mac,
        })
    }

    /// The interface's MAC (the canaries' source address).
    /// The socket's descriptor (for a sandbox that forbids sending on it).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends one raw Ethernet frame on the interface.
    pub fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        self.send_once(frame, true)
    }

    fn send_once(&self, frame: &[u8], retry: bool) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = CANARY_ETHERTYPE.to_be();
        sll.sll_ifindex = self.ifindex.load(std::sync::atomic::Ordering::Relaxed) as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&CANARY_DST_MAC);
        // SAFETY: buffer and address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            // The interface is gone (ENXIO: no device of that index). If
            // one of the same name and hardware address is there now (a
            // re-created interface), send there: the frame proves the
            // capture only if the capture follows it too, which it does
            // only after the old one's deletion was proven.
            if retry && matches!(e.raw_os_error(), Some(libc::ENXIO | libc::ENODEV)) {
                if let Some(i) = crate::iface::IfaceInfo::read(&self.iface) {
                    if i.mac == Some(self.mac) {
                        self.ifindex
                            .store(i.ifindex, std::sync::atomic::Ordering::Relaxed);
                        return self.send_once(frame, false);
                    }
                }
            }
            return Err(e);
        }
        if n as usize != frame.len() {
            return Err(io::Error::other("short send"));
        }
        Ok(())
    }

    /// Sends the next canary of `ledger` and records it as sent at `at_ns`
    /// (nanoseconds on the caller's clock).
    pub fn send_next(&self, ledger: &mut CanaryLedger, at_ns: u64) -> Result<u64, CanaryError> {
        let (id, frame) = ledger.next_frame();
        self.send_frame(&frame)
            .map_err(|source| CanaryError::Send {
                iface: self.iface.clone(),
                id,
                source,
            })?;
        ledger.mark_sent(id, at_ns);
        Ok(id)
    }
}
