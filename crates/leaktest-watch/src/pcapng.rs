//! A streaming pcapng writer for leaked frames (`--pcap FILE`): one section,
//! one interface (nanosecond timestamps), one Enhanced Packet Block per frame
//! written straight to a buffered file, and at the end an Interface
//! Statistics Block carrying the kernel's drop counters. Nothing is kept in
//! memory per frame, so a million leaked frames cost no memory.

use crate::report::ReportError;
use leaktest_wire::LinkType;
use leaktest_wire::{CaptureStats, Frame};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Snap length written in the interface description (0 = no limit).
const SNAPLEN: u32 = 0;

/// Writes frames to a pcapng file as they come.
pub struct PcapngWriter {
    path: PathBuf,
    w: PcapNgWriter<BufWriter<File>>,
    frames: u64,
    start_ns: u64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl PcapngWriter {
    /// Creates `path` for frames captured on Ethernet interface `iface_name`.
    pub fn create(path: impl AsRef<Path>, iface_name: &str) -> Result<PcapngWriter, ReportError> {
        PcapngWriter::create_with_link(path, iface_name, LinkType::Ethernet)
    }

    /// Creates `path` for frames of the given link type.
    pub fn create_with_link(
        path: impl AsRef<Path>,
        iface_name: &str,
        link: LinkType,
    ) -> Result<PcapngWriter, ReportError> {
        let path = path.as_ref().to_owned();
        let file = File::create(&path).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        let pcap_err = |source| ReportError::Pcap {
            path: path.clone(),
            source,
        };
        let mut w = PcapNgWriter::new(BufWriter::with_capacity(1 << 20, file)).map_err(pcap_err)?;
        let idb = InterfaceDescriptionBlock {
            linktype: match link {
                LinkType::Ethernet => DataLink::ETHERNET,
                LinkType::RawIp => DataLink::RAW,
            },
            snaplen: SNAPLEN,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(iface_name.to_owned())),
                // pcap-file writes EPB timestamps in nanoseconds.
                InterfaceDescriptionOption::IfTsResol(9),
                InterfaceDescriptionOption::Comment(Cow::Borrowed(
                    "outbound frames captured by leaktest watch",
                )),
            ],
        };
        w.write_pcapng_block(idb).map_err(pcap_err)?;
        Ok(PcapngWriter {
            path,
            w,
            frames: 0,
            start_ns: now_ns(),
        })
    }

    fn pcap_err(&self, source: pcap_file::PcapError) -> ReportError {
        ReportError::Pcap {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one frame.
    pub fn write(&mut self, frame: &Frame<'_>) -> Result<(), ReportError> {
        self.write_with_comment(frame, None)
    }

    /// Appends one frame with a comment (Wireshark shows it as the packet
    /// comment): the rule and cause that made it a leak.
    pub fn write_with_comment(
        &mut self,
        frame: &Frame<'_>,
        comment: Option<String>,
    ) -> Result<(), ReportError> {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::new(frame.ts_sec, frame.ts_nsec.min(999_999_999)),
            original_len: frame.orig_len.max(frame.data.len() as u32),
            data: Cow::Borrowed(frame.data),
            options: comment
                .map(|c| vec![EnhancedPacketOption::Comment(Cow::Owned(c))])
                .unwrap_or_default(),
        };
        self.w
            .write_pcapng_block(epb)
            .map_err(|e| self.pcap_err(e))?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes the Interface Statistics Block (packets accepted by the filter,
    /// kernel and interface drops) and flushes the file to disk.
    pub fn finish(mut self, stats: &CaptureStats) -> Result<u64, ReportError> {
        let end = now_ns();
        let isb = InterfaceStatisticsBlock {
            interface_id: 0,
            timestamp: end,
            options: vec![
                InterfaceStatisticsOption::IsbStartTime(self.start_ns),
                InterfaceStatisticsOption::IsbEndTime(end),
                InterfaceStatisticsOption::IsbFilterAccept(stats.received),
                // Wireshark shows isb_ifdrop as "Dropped packets" and dumpcap
                // puts every drop it knows there; isb_osdrop has the kernel's
                // own share alone.
                InterfaceStatisticsOption::IsbIfDrop(
                    stats.dropped.saturating_add(stats.if_dropped),
                ),
                InterfaceStatisticsOption::IsbOsDrop(stats.dropped),
                InterfaceStatisticsOption::Comment(Cow::Owned(format!(
                    "leaktest wrote {} of {} captured frames",
                    self.frames, stats.received
                ))),
            ],
        };
        self.w
            .write_pcapng_block(isb)
            .map_err(|e| self.pcap_err(e))?;
        let frames = self.frames;
        let path = self.path.clone();
        let mut inner = self.w.into_inner();
        inner
            .flush()
            .and_then(|_| inner.get_ref().sync_all())
            .map_err(|source| ReportError::Io { path, source })?;
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use pcap_parser::pcapng::Block;
    use pcap_parser::{PcapBlockOwned, PcapNGSlice};
    use std::process::Command;

    fn frames() -> Vec<Vec<u8>> {
        (0..100u16)
            .map(|i| eth4(WS4, NET4, 17, &udp(40000, i, &[i as u8; 33])))
            .collect()
    }

    fn write_file(path: &Path) -> Vec<Vec<u8>> {
        let data = frames();
        let mut w = PcapngWriter::create(path, "ext0").unwrap();
        for (i, d) in data.iter().enumerate() {
            w.write(&Frame {
                ts_sec: 1_700_000_000 + i as u64,
                ts_nsec: 123_456_789,
                data: d,
                orig_len: d.len() as u32 + 4,
            })
            .unwrap();
        }
        assert_eq!(w.frames(), 100);
        let n = w
            .finish(&CaptureStats {
                received: 1000,
                dropped: 17,
                if_dropped: 3,
            })
            .unwrap();
        assert_eq!(n, 100);
        data
    }

    #[test]
    fn read_back_with_pcap_parser() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leaks.pcapng");
        let data = write_file(&path);
        let bytes = std::fs::read(&path).unwrap();
        let mut packets = Vec::new();
        let mut isb = None;
        let mut idb = None;
        for block in PcapNGSlice::from_slice(&bytes).unwrap() {
            match block.unwrap() {
                PcapBlockOwned::NG(Block::InterfaceDescription(b)) => idb = Some(b),
                PcapBlockOwned::NG(Block::EnhancedPacket(b)) => packets.push(b),
                PcapBlockOwned::NG(Block::InterfaceStatistics(b)) => isb = Some(b),
                _ => {}
            }
        }
        let idb = idb.expect("an interface description block");
        assert_eq!(idb.linktype, pcap_parser::Linktype::ETHERNET);
        assert_eq!(idb.ts_resolution(), Some(1_000_000_000));
        let name = idb.options.iter().find(|o| o.code.0 == 2).unwrap();
        assert_eq!(name.value(), b"ext0");
        assert_eq!(packets.len(), 100);
        for (i, p) in packets.iter().enumerate() {
            assert_eq!(&p.data[..p.caplen as usize], &data[i][..]);
            assert_eq!(p.origlen as usize, data[i].len() + 4);
            let (sec, frac) = p.decode_ts(0, 1_000_000_000);
            assert_eq!((sec as u64, frac), (1_700_000_000 + i as u64, 123_456_789));
        }
        let isb = isb.expect("an interface statistics block");
        let opt = |code: u16| {
            isb.options
                .iter()
                .find(|o| o.code.0 == code)
                .and_then(|o| o.as_u64_le())
        };
        assert_eq!(opt(6), Some(1000), "isb_filteraccept");
        assert_eq!(opt(7), Some(17), "isb_osdrop");
        assert_eq!(opt(5), Some(20), "isb_ifdrop: kernel and interface drops");
    }

    #[test]
    fn raw_ip_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tun.pcapng");
        let pkt = ipv6(GW6, NET6, 17, 64, &udp(1, 2, b"x"));
        let mut w = PcapngWriter::create_with_link(&path, "tun0", LinkType::RawIp).unwrap();
        w.write(&Frame {
            ts_sec: 5,
            ts_nsec: 0,
            data: &pkt,
            orig_len: pkt.len() as u32,
        })
        .unwrap();
        w.finish(&CaptureStats::default()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut linktypes = Vec::new();
        let mut data = Vec::new();
        for block in PcapNGSlice::from_slice(&bytes).unwrap() {
            match block.unwrap() {
                PcapBlockOwned::NG(Block::InterfaceDescription(b)) => linktypes.push(b.linktype),
                PcapBlockOwned::NG(Block::EnhancedPacket(b)) => {
                    data.push(b.data[..b.caplen as usize].to_vec())
                }
                _ => {}
            }
        }
        assert_eq!(linktypes, vec![pcap_parser::Linktype::RAW]);
        assert_eq!(data, vec![pkt]);
    }

    #[test]
    fn tshark_reads_it() {
        let Ok(out) = Command::new("tshark").arg("-v").output() else {
            eprintln!("tshark not installed: skipping the tshark read-back");
            return;
        };
        assert!(out.status.success());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leaks.pcapng");
        write_file(&path);
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&path)
            .args([
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "udp.dstport",
                "-e",
                "ip.dst",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 100);
        assert!(lines[7].starts_with("1700000007.123456789"), "{}", lines[7]);
        assert!(lines[7].ends_with("\t7\t203.0.113.7"), "{}", lines[7]);
        // capinfos sees the interface name and the statistics block (the
        // counters themselves are checked with pcap-parser above).
        if let Ok(ci) = Command::new("capinfos").arg(&path).output() {
            let s = String::from_utf8_lossy(&ci.stdout);
            assert!(s.contains("Number of packets:   100"), "{s}");
            assert!(s.contains("Name = ext0"), "{s}");
            assert!(s.contains("Number of stat entries = 1"), "{s}");
        }
    }
}
