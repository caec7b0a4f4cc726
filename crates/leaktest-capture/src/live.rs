//! A live libpcap capture of the frames leaving one interface.
//!
//! Set-up choices, each for a measured reason (see `notes/packets.md`):
//! * a large `buffer_size` and no immediate mode, so libpcap maps a
//!   TPACKET_V3 ring of blocks (immediate mode falls back to TPACKET_V2,
//!   one slot per frame, which dropped packets at probe rate);
//! * a read timeout, which libpcap passes to the kernel as the ring's
//!   block-retire timeout (how long a partly filled block waits before user
//!   space gets it); the handle is non-blocking and [`LiveCapture::drain`]
//!   waits in its own `poll(2)` for at most that long, because with
//!   TPACKET_V3 libpcap itself blocks until a block is retired, which never
//!   happens on a quiet interface; so the caller regularly gets control back
//!   to poll signals, send canaries and check the interface;
//! * `outbound` inside the BPF program, evaluated by the kernel before the
//!   ring (`pcap_setdirection` would filter in user space after it). The
//!   program is compiled by libpcap but attached with `SO_ATTACH_FILTER`
//!   directly: `pcap_setfilter` on a TPACKET_V3 ring also runs the filter in
//!   user space over the next block, where `outbound` cannot be evaluated,
//!   so it silently discards every frame of that block (measured: the first
//!   frames after start vanished without being counted as drops). Frames
//!   that entered the ring before the filter was attached are discarded up
//!   to a start barrier (a canary frame sent after attaching);
//! * nanosecond timestamps;
//! * accounting that closes: [`LiveCapture::delivered`] counts every frame
//!   the ring handed out (the start barrier's included), and
//!   [`LiveCapture::seal`] detaches the capture from the interface (a filter
//!   that accepts nothing, so the kernel neither queues nor counts another
//!   frame) and drains what is left, after which the kernel's count of
//!   frames that passed the filter equals frames delivered plus frames
//!   dropped, exactly (`PACKET_STATISTICS` counts a frame only once it passed
//!   the filter, and its `tp_packets` includes `tp_drops`: Linux
//!   `net/packet/af_packet.c`, `tpacket_rcv` and `packet_getsockopt`).

use crate::canary::{new_ledger, CanaryInjector};
use crate::{CaptureError, CaptureStats, Frame};
use leaktest_wire::canary::CanaryLedger;
use leaktest_wire::canary::CanarySighting;
use pcap::{Active, Capture, Linktype, Precision};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long [`LiveCapture::open`] waits for its start barrier.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(3);

/// Default kernel buffer: 64 MiB (64 blocks of 1 MiB in the TPACKET_V3 ring).
pub const DEFAULT_BUFFER_BYTES: usize = 64 << 20;
/// Default snap length: whole probes and whole MTU-sized frames.
pub const DEFAULT_SNAPLEN: u32 = 4096;
/// Default read (and block-retire) timeout.
pub const DEFAULT_TIMEOUT_MS: u32 = 50;
/// Most frames handed out by one [`LiveCapture::drain`] call.
const DRAIN_BATCH: usize = 1 << 16;

/// How to open a capture.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    /// Interface name.
    pub iface: String,
    /// Kernel ring size in bytes.
    pub buffer_bytes: usize,
    /// Bytes kept of each frame.
    pub snaplen: u32,
    /// Read timeout in milliseconds (> 0).
    pub timeout_ms: u32,
    /// Capture every direction instead of `outbound` only (for tests and tools).
    pub both_directions: bool,
}

impl CaptureConfig {
    /// The defaults for `iface`: outbound only, 64 MiB ring, 4096-byte snap length, 50 ms.
    pub fn new(iface: &str) -> CaptureConfig {
        CaptureConfig {
            iface: iface.to_string(),
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            snaplen: DEFAULT_SNAPLEN,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            both_directions: false,
        }
    }

    /// The BPF program this configuration installs.
    pub fn filter(&self) -> &'static str {
        if self.both_directions {
            ""
        } else {
            "outbound"
        }
    }
}

/// An open capture on one Ethernet interface.
pub struct LiveCapture {
    cap: Capture<Active>,
    iface: String,
    stats: StatsAccumulator,
    timeout_ms: i32,
    delivered: u64,
    barrier_frames: u64,
    sealed: bool,
    /// Also wait on this descriptor in [`LiveCapture::drain`] (the link
    /// notifications): readable, the wait ends early and
    /// [`LiveCapture::woken`] says so.
    wake_fd: Option<std::os::fd::RawFd>,
    woken: bool,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("iface", &self.iface)
            .finish()
    }
}

fn pcap_err(iface: &str, e: pcap::Error) -> CaptureError {
    let msg = e.to_string();
    let lower = msg.to_ascii_lowercase();
    if lower.contains("permission") || lower.contains("not permitted") {
        CaptureError::Permission {
            iface: iface.to_string(),
            msg,
        }
    } else if lower.contains("no such device") {
        CaptureError::NoSuchInterface(iface.to_string())
    } else {
        CaptureError::Pcap {
            iface: iface.to_string(),
            msg,
        }
    }
}

impl LiveCapture {
    /// Opens and activates the capture. Fails if the interface does not
    /// exist, privileges are missing, or the link type is not Ethernet
    /// (canary frames are Ethernet frames).
    pub fn open(cfg: &CaptureConfig) -> Result<LiveCapture, CaptureError> {
        let iface = cfg.iface.as_str();
        if crate::iface::IfaceInfo::read(iface).is_none() {
            return Err(CaptureError::NoSuchInterface(iface.to_string()));
        }
        let err = |e| pcap_err(iface, e);
        let cap = Capture::from_device(iface)
            .map_err(err)?
            .promisc(false)
            .snaplen(cfg.snaplen.min(i32::MAX as u32) as i32)
            .buffer_size(cfg.buffer_bytes.min(i32::MAX as usize) as i32)
            .timeout(cfg.timeout_ms.clamp(1, i32::MAX as u32) as i32)
            .precision(Precision::Nano)
            .immediate_mode(false)
            .open()
            .map_err(err)?;
        let dlt = cap.get_datalink();
        if dlt != Linktype::ETHERNET {
            return Err(CaptureError::UnsupportedLink {
                iface: iface.to_string(),
                dlt: dlt.0,
            });
        }
        let cap = cap.setnonblock().map_err(err)?;
        if !cfg.filter().is_empty() {
            let prog = cap.compile(cfg.filter(), true).map_err(err)?;
            let insns = prog.get_instructions();
            // SAFETY: pcap's BpfInstruction is a transparent wrapper of
            // `struct bpf_insn`, which has the layout of `struct sock_filter`.
            let code: Vec<libc::sock_filter> = unsafe {
                std::slice::from_raw_parts(insns.as_ptr().cast::<libc::sock_filter>(), insns.len())
            }
            .to_vec();
            attach_filter(cap.as_raw_fd(), code).map_err(|e| CaptureError::Pcap {
                iface: iface.to_string(),
                msg: format!("attaching the BPF filter: {e}"),
            })?;
        }
        let mut live = LiveCapture {
            cap,
            iface: iface.to_string(),
            stats: StatsAccumulator::default(),
            timeout_ms: cfg.timeout_ms.clamp(1, i32::MAX as u32) as i32,
            delivered: 0,
            barrier_frames: 0,
            sealed: false,
            wake_fd: None,
            woken: false,
        };
        live.barrier()?;
        live.barrier_frames = live.delivered;
        Ok(live)
    }

    /// Frames the ring handed out since the capture opened, the start
    /// barrier's included.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Frames discarded by the start barrier (entered the ring before the
    /// kernel filter was attached, or before the barrier frame).
    pub fn barrier_frames(&self) -> u64 {
        self.barrier_frames
    }

    /// The capture socket's descriptor (for a sandbox that forbids sending
    /// on it; the capture keeps owning it).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.cap.as_raw_fd()
    }

    /// Also wait on `fd` in [`LiveCapture::drain`] (see `wake_fd`).
    pub fn set_wake_fd(&mut self, fd: Option<std::os::fd::RawFd>) {
        self.wake_fd = fd;
    }

    /// Whether a wait in [`LiveCapture::drain`] ended because the wake
    /// descriptor was readable since the last call.
    pub fn woken(&mut self) -> bool {
        std::mem::take(&mut self.woken)
    }

    /// The ifindex the capture socket is bound to now, read with
    /// `getsockname(2)`. The kernel sets it to -1 when the interface is
    /// unregistered, deleted or moved to another namespace (Linux
    /// `net/packet/af_packet.c`, `packet_notifier` on `NETDEV_UNREGISTER`),
    /// so a capture that silently stopped seeing shows here even when its
    /// interface came back between two looks.
    pub fn bound_ifindex(&self) -> std::io::Result<i32> {
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: a buffer of `len` bytes for the address.
        let r = unsafe {
            libc::getsockname(
                self.cap.as_raw_fd(),
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(sll.sll_ifindex)
    }

    /// Binds the capture to interface `ifindex` (a re-created interface of
    /// the same name): the same socket, ring, BPF filter and counters, so
    /// the accounting stays whole. `bind(2)` on a packet socket needs no
    /// privilege (only creating one does), so the sandboxed reader can
    /// follow. Errors: the kernel refused the bind (the interface is gone
    /// again), or it is bound to another index afterwards.
    pub fn rebind(&mut self, ifindex: u32) -> Result<(), CaptureError> {
        let err = |msg: String| CaptureError::Pcap {
            iface: self.iface.clone(),
            msg,
        };
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: a valid sockaddr_ll of its size.
        let r = unsafe {
            libc::bind(
                self.cap.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(err(format!(
                "binding the capture to ifindex {ifindex}: {}",
                std::io::Error::last_os_error()
            )));
        }
        match self.bound_ifindex() {
            Ok(i) if i == ifindex as i32 => Ok(()),
            Ok(i) => Err(err(format!(
                "the capture is bound to ifindex {i}, not {ifindex}"
            ))),
            Err(e) => Err(err(format!("reading the capture's binding: {e}"))),
        }
    }

    /// Detaches the capture from the interface and hands every frame still
    /// in the ring to `f`: afterwards the kernel counts nothing more, so
    /// `stats().received == delivered() + stats().dropped` holds exactly.
    /// Waits for the ring's last partly filled block to be retired (the
    /// read timeout). Returns the frames handed out.
    pub fn seal<F: FnMut(&Frame<'_>)>(&mut self, mut f: F) -> Result<u64, CaptureError> {
        if !self.sealed {
            // `ret #0`: accept nothing.
            let code = vec![libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: 0,
            }];
            attach_filter(self.cap.as_raw_fd(), code).map_err(|e| CaptureError::Pcap {
                iface: self.iface.clone(),
                msg: format!("detaching the capture: {e}"),
            })?;
            self.sealed = true;
        }
        let mut total = 0u64;
        // Two quiet read timeouts in a row: every block was retired and read.
        let mut quiet = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while quiet < 2 && Instant::now() < deadline {
            let n = self.drain(&mut f)?;
            total += n as u64;
            quiet = if n == 0 { quiet + 1 } else { 0 };
        }
        Ok(total)
    }

    /// Sends a start barrier and discards every frame up to it: what entered
    /// the ring before the kernel filter was attached.
    fn barrier(&mut self) -> Result<(), CaptureError> {
        let iface = self.iface.clone();
        let fail = |msg: String| CaptureError::Pcap {
            iface: iface.clone(),
            msg,
        };
        let inj = CanaryInjector::open(&self.iface).map_err(|e| fail(e.to_string()))?;
        let mut barrier = new_ledger(inj.mac()).map_err(|e| fail(e.to_string()))?;
        let deadline = Instant::now() + BARRIER_TIMEOUT;
        let mut next_send = Instant::now();
        while Instant::now() < deadline {
            // Resend now and then: a lost barrier must not stall the start.
            if Instant::now() >= next_send {
                inj.send_next(&mut barrier, 0)
                    .map_err(|e| fail(e.to_string()))?;
                next_send = Instant::now() + Duration::from_millis(500);
            }
            let mut seen = false;
            // Frames after the barrier in this batch are dropped with the
            // rest: harmless, the watch has not started yet.
            self.dispatch(&mut |f: &Frame<'_>| {
                if CanaryLedger::has_canary_ethertype(f.data)
                    && matches!(barrier.observe(f.data, false), CanarySighting::Ours(_))
                {
                    seen = true;
                }
            })?;
            if seen {
                return Ok(());
            }
            let mut pfd = libc::pollfd {
                fd: self.cap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, self.timeout_ms) };
        }
        Err(fail(format!(
            "the capture did not see its own start frame within {} s",
            BARRIER_TIMEOUT.as_secs()
        )))
    }

    /// The interface captured on.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Hands every frame waiting in the ring (at most one batch) to `f`,
    /// borrowed from the ring. When nothing is waiting it waits up to the
    /// read timeout for a block. Returns the number of frames handed out; an
    /// error means the capture is broken (for example the interface
    /// disappeared).
    pub fn drain<F: FnMut(&Frame<'_>)>(&mut self, mut f: F) -> Result<usize, CaptureError> {
        let n = self.dispatch(&mut f)?;
        if n > 0 {
            return Ok(n);
        }
        let mut pfd = [
            libc::pollfd {
                fd: self.cap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake_fd.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds (a negative fd is ignored). EINTR (a
        // signal) simply ends the wait.
        unsafe { libc::poll(pfd.as_mut_ptr(), 2, self.timeout_ms) };
        if pfd[1].revents != 0 {
            self.woken = true;
        }
        if pfd[0].revents == 0 {
            return Ok(0);
        }
        // Readable or an error condition: libpcap reads it or reports it.
        self.dispatch(&mut f)
    }

    fn dispatch<F: FnMut(&Frame<'_>)>(&mut self, f: &mut F) -> Result<usize, CaptureError> {
        let iface = &self.iface;
        let delivered = &mut self.delivered;
        self.cap
            .dispatch(Some(DRAIN_BATCH), |p| {
                *delivered += 1;
                let frame = Frame {
                    ts_sec: p.header.ts.tv_sec.max(0) as u64,
                    // Nanosecond precision: tv_usec holds nanoseconds.
                    ts_nsec: p.header.ts.tv_usec.clamp(0, 999_999_999) as u32,
                    data: p.data,
                    orig_len: p.header.len,
                };
                f(&frame);
            })
            .map_err(|e| pcap_err(iface, e))
    }

    /// Kernel counters, as 64-bit running totals. Call it at least once per
    /// 2^32 packets so wrapping of libpcap's 32-bit totals is noticed.
    pub fn stats(&mut self) -> Result<CaptureStats, CaptureError> {
        let s = self.cap.stats().map_err(|e| pcap_err(&self.iface, e))?;
        Ok(self.stats.update(s.received, s.dropped, s.if_dropped))
    }

    /// The counters as last read by [`LiveCapture::stats`].
    pub fn last_stats(&self) -> CaptureStats {
        self.stats.total
    }
}

/// Attaches a classic BPF program to the capture socket with
/// `SO_ATTACH_FILTER` (replacing any earlier one).
fn attach_filter(fd: i32, mut code: Vec<libc::sock_filter>) -> std::io::Result<()> {
    let fprog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: a valid sock_fprog pointing at `code`, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Extends libpcap's 32-bit running totals to 64 bits.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StatsAccumulator {
    last: [u32; 3],
    total: CaptureStats,
}

impl StatsAccumulator {
    pub(crate) fn update(&mut self, received: u32, dropped: u32, if_dropped: u32) -> CaptureStats {
        let now = [received, dropped, if_dropped];
        let delta: Vec<u64> = now
            .iter()
            .zip(self.last)
            .map(|(n, l)| n.wrapping_sub(l) as u64)
            .collect();
        self.last = now;
        self.total.received += delta[0];
        self.total.dropped += delta[1];
        self.total.if_dropped += delta[2];
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_survive_wrapping() {
        let mut acc = StatsAccumulator::default();
        assert_eq!(acc.update(10, 1, 0).received, 10);
        let s = acc.update(u32::MAX - 5, 3, 0);
        assert_eq!((s.received, s.dropped), (u32::MAX as u64 - 5, 3));
        // libpcap's total wrapped around past zero.
        let s = acc.update(4, 3, 0);
        assert_eq!(s.received, u32::MAX as u64 + 5);
        assert_eq!(s.dropped, 3);
    }

    #[test]
    fn default_filter_is_outbound_only() {
        let cfg = CaptureConfig::new("eth0");
        assert_eq!(cfg.filter(), "outbound");
        assert!(cfg.buffer_bytes >= 64 << 20);
        assert!(cfg.snaplen >= 2048);
    }

    #[test]
    fn missing_interface_is_a_clear_error() {
        let e = LiveCapture::open(&CaptureConfig::new("lt-nonexist0")).unwrap_err();
        assert!(matches!(e, CaptureError::NoSuchInterface(_)), "{e}");
    }
}
