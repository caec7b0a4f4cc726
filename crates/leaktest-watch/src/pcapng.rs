//! A streaming pcapng writer for leaked frames (`--pcap FILE`): one section,
//! one interface (nanosecond timestamps), one Enhanced Packet Block per frame,
//! and at the end an Interface Statistics Block carrying the kernel's drop
//! counters. Nothing is kept in memory per frame beyond a bounded spool, so a
//! million leaked frames cost no memory.
//!
//! The file only ever holds whole blocks: blocks are spooled in memory (up to
//! [`SPOOL_BYTES`]) and written out at block boundaries; when a write fails
//! (a full disk, a quota) the file is cut back to the last block written
//! whole, further frames are only counted, and [`PcapngWriter::finish`] says
//! how many of the frames meant for the file it holds. The result is a valid
//! pcapng file up to its last complete block, never one ending mid-block.

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
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Snap length written in the interface description (0 = no limit).
const SNAPLEN: u32 = 0;

/// Bytes of whole blocks held in memory before they are written out.
pub const SPOOL_BYTES: usize = 1 << 20;

/// Where the blocks end up: a file that can be written and cut back.
pub trait BlockSink {
    /// Writes some of `buf`, as [`Write::write`].
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Cuts the sink back to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Makes what was written durable.
    fn sync(&mut self) -> io::Result<()>;
}

impl BlockSink for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

/// What a finished pcapng file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapSummary {
    /// Frames in the file, each in a whole block.
    pub written: u64,
    /// Frames the watch meant to write (`written` unless a write failed).
    pub offered: u64,
    /// Why the file holds fewer frames than offered, or lacks its
    /// statistics block.
    pub error: Option<String>,
}

impl PcapSummary {
    /// The warning for a file that holds less than it should, e.g. `pcap
    /// truncated: 812 of 40,000 frames written to leaks.pcapng (No space left
    /// on device)`.
    pub fn warning(&self, path: &Path) -> Option<String> {
        let e = self.error.as_ref()?;
        Some(if self.written < self.offered {
            format!(
                "pcap truncated: {} of {} frames written to {} ({e}); the file is valid up to its last complete block",
                self.written,
                self.offered,
                path.display()
            )
        } else {
            format!(
                "pcap {}: all {} frames written, but not its statistics block ({e})",
                path.display(),
                self.written
            )
        })
    }
}

/// Writes frames to a pcapng file as they come.
pub struct PcapngWriter<S: BlockSink = File> {
    path: PathBuf,
    /// Serialises blocks into the spool (`get_mut` drains it).
    w: PcapNgWriter<Vec<u8>>,
    sink: S,
    /// End offsets of the spooled blocks, with the frame count after each.
    boundaries: Vec<(usize, u64)>,
    /// Bytes of whole blocks in the sink.
    on_disk: u64,
    /// Frames in whole blocks in the sink.
    frames_on_disk: u64,
    /// Frames meant for the file (written, spooled, or lost to a failure).
    frames: u64,
    failed: Option<String>,
    start_ns: u64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl PcapngWriter<File> {
    /// Creates `path` for frames captured on Ethernet interface `iface_name`.
    pub fn create(path: impl AsRef<Path>, iface_name: &str) -> Result<PcapngWriter, ReportError> {
        PcapngWriter::create_with_link(path, iface_name, LinkType::Ethernet)
    }

    /// Creates `path` for frames of the given link type. Only a regular file
    /// (or a new one) is written: it is opened without blocking (a FIFO cannot
    /// hang the watch) and refused if it is not a regular file.
    pub fn create_with_link(
        path: impl AsRef<Path>,
        iface_name: &str,
        link: LinkType,
    ) -> Result<PcapngWriter, ReportError> {
        let path = path.as_ref().to_owned();
        let io_err = |source| ReportError::Io {
            path: path.clone(),
            source,
        };
        let file = leaktest_fs::create_stream("--pcap", &path).map_err(|e| ReportError::Io {
            path: path.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        let mut w = PcapngWriter::with_sink(path.clone(), file, iface_name, link)?;
        // The header is on disk at once: a full disk is found before the watch.
        w.spill();
        match w.failed.take() {
            Some(e) => Err(io_err(io::Error::other(e))),
            None => Ok(w),
        }
    }
}

impl<S: BlockSink> PcapngWriter<S> {
    /// A writer into any sink (`path` names it in messages).
    pub fn with_sink(
        path: PathBuf,
        sink: S,
        iface_name: &str,
        link: LinkType,
    ) -> Result<PcapngWriter<S>, ReportError> {
        let pcap_err = |source| ReportError::Pcap {
            path: path.clone(),
            source,
        };
        let mut w = PcapNgWriter::new(Vec::with_capacity(SPOOL_BYTES)).map_err(pcap_err)?;
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
        let header_end = w.get_ref().len();
        Ok(PcapngWriter {
            path,
            w,
            sink,
            boundaries: vec![(header_end, 0)],
            on_disk: 0,
            frames_on_disk: 0,
            frames: 0,
            failed: None,
            start_ns: now_ns(),
        })
    }

    /// Writes the spool out, whole blocks only; on a failure the sink is cut
    /// back to the last whole block and the writer stops writing.
    fn spill(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let buf = std::mem::take(self.w.get_mut());
        let mut pos = 0;
        let mut error = None;
        while pos < buf.len() {
            match self.sink.write(&buf[pos..]) {
                Ok(0) => {
                    error = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        // The last block that reached the sink whole.
        let (whole, frames) = self
            .boundaries
            .iter()
            .rev()
            .find(|(end, _)| *end <= pos)
            .copied()
            .unwrap_or((0, self.frames_on_disk));
        if let Some(e) = error {
            let mut msg = e.to_string();
            if whole < pos {
                if let Err(t) = self.sink.truncate(self.on_disk + whole as u64) {
                    msg =
                        format!("{msg}; cutting the file back to its last whole block failed: {t}");
                }
            }
            self.failed = Some(msg);
        }
        self.on_disk += whole as u64;
        self.frames_on_disk = frames;
        self.boundaries.clear();
        // Keep the spool's allocation.
        let mut buf = buf;
        buf.clear();
        *self.w.get_mut() = buf;
    }

    fn block_done(&mut self) {
        self.boundaries.push((self.w.get_ref().len(), self.frames));
        if self.w.get_ref().len() >= SPOOL_BYTES {
            self.spill();
        }
    }

    /// Appends one frame.
    pub fn write(&mut self, frame: &Frame<'_>) -> Result<(), ReportError> {
        self.write_with_comment(frame, None)
    }

    /// Appends one frame with a comment (Wireshark shows it as the packet
    /// comment): the rule and cause that made it a leak. After a failed
    /// write the frame is only counted; the error is returned once, at the
    /// write that failed.
    pub fn write_with_comment(
        &mut self,
        frame: &Frame<'_>,
        comment: Option<String>,
    ) -> Result<(), ReportError> {
        if self.failed.is_some() {
            self.frames += 1;
            return Ok(());
        }
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
            .map_err(|source| ReportError::Pcap {
                path: self.path.clone(),
                source,
            })?;
        self.frames += 1;
        self.block_done();
        match &self.failed {
            Some(e) => Err(ReportError::Io {
                path: self.path.clone(),
                source: io::Error::other(e.clone()),
            }),
            None => Ok(()),
        }
    }

    /// Frames meant for the file so far (written, spooled or lost).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes the Interface Statistics Block (packets accepted by the filter;
    /// the kernel's drops in `isb_osdrop`, the interface's own in
    /// `isb_ifdrop`, as the pcapng specification, draft-ietf-opsawg-pcapng section 4.6, defines
    /// them), writes everything out and syncs it.
    pub fn finish(mut self, stats: &CaptureStats) -> PcapSummary {
        let end = now_ns();
        if self.failed.is_none() {
            let isb = InterfaceStatisticsBlock {
                interface_id: 0,
                timestamp: end,
                options: vec![
                    InterfaceStatisticsOption::IsbStartTime(self.start_ns),
                    InterfaceStatisticsOption::IsbEndTime(end),
                    InterfaceStatisticsOption::IsbFilterAccept(stats.received),
                    InterfaceStatisticsOption::IsbIfDrop(stats.if_dropped),
                    InterfaceStatisticsOption::IsbOsDrop(stats.dropped),
                    InterfaceStatisticsOption::Comment(Cow::Owned(format!(
                        "leaktest wrote {} of {} captured frames",
                        self.frames, stats.received
                    ))),
                ],
            };
            match self.w.write_pcapng_block(isb) {
                Ok(_) => self.block_done(),
                Err(e) => self.failed = Some(e.to_string()),
            }
            self.spill();
        }
        if self.failed.is_none() {
            if let Err(e) = self.sink.sync() {
                self.failed = Some(format!("syncing: {e}"));
            }
        }
        PcapSummary {
            written: self.frames_on_disk,
            offered: self.frames,
            error: self.failed,
        }
    }
}

/// Marks a finished watch's timeline in its pcapng file (`--pcap` with
/// `--run-at` or `--event-fifo`): the file is rewritten (atomically, next
/// to itself) with
/// - a section comment listing every event: `leaktest timeline: event 1
///   'nft -f gw.nft' (run-at) at 1.002 s, ran 31.4 ms, exit 0; …` (Wireshark:
///   Statistics › Capture File Properties);
/// - on each frame captured after an event began, a packet comment `after
///   event 2 'reload' +40.123 ms` appended to what it said (the rule that
///   decided it), and on the first such frame of each event `first frame
///   after event 2 'reload'`.
///
/// An event with no frame after it is only in the section comment. Events
/// are taken in start order; `watch_start_unix_ns` is the watch's start
/// (for the `at` seconds). Returns how many frames it commented. Errors:
/// the file cannot be read as pcapng or written; then it is left as it was.
pub fn mark_events(
    path: &Path,
    events: &[crate::timeline::Event],
    watch_start_unix_ns: u64,
) -> Result<u64, ReportError> {
    use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    use std::os::unix::fs::MetadataExt;
    let mut events: Vec<&crate::timeline::Event> = events.iter().collect();
    events.sort_by_key(|e| e.start_unix_ns);
    // The rewrite keeps the file's owner and mode (a user's 0600 file
    // stays 0600 and theirs).
    let before = std::fs::metadata(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })?;
    let pcap_err = |source| ReportError::Pcap {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader =
        PcapNgReader::new(io::BufReader::with_capacity(1 << 16, file)).map_err(pcap_err)?;
    let mut shb = reader.section().clone();
    let mut timeline = String::from("leaktest timeline:");
    for (i, e) in events.iter().enumerate() {
        let at = e.start_unix_ns.saturating_sub(watch_start_unix_ns) as f64 / 1e9;
        timeline.push_str(&format!(
            "{} event {} '{}' ({}) at {at:.3} s",
            if i == 0 { "" } else { ";" },
            i + 1,
            e.name,
            e.source
        ));
        if let Some(ms) = e.ran_ms() {
            timeline.push_str(&format!(", ran {ms:.1} ms"));
        }
        if let Some(c) = e.exit_code {
            timeline.push_str(&format!(", exit {c}"));
        }
        if let Some(p) = &e.problem {
            timeline.push_str(&format!(", {p}"));
        }
    }
    if events.is_empty() {
        timeline.push_str(" no events");
    }
    shb.options
        .push(SectionHeaderOption::Comment(Cow::Owned(timeline)));
    let mut marked = 0u64;
    let mut result: Result<(), ReportError> = Ok(());
    leaktest_fs::write_atomic("--pcap", path, |out| {
        let mut w = PcapNgWriter::with_section_header(out, shb)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // The next event whose first frame is still to come.
        let mut first_pending = vec![true; events.len()];
        while let Some(block) = reader.next_block() {
            let mut block = match block {
                Ok(b) => b,
                Err(e) => {
                    result = Err(pcap_err(e));
                    return Err(io::Error::other("unreadable pcapng"));
                }
            };
            if let Block::EnhancedPacket(epb) = &mut block {
                let ts = epb.timestamp.as_nanos() as u64;
                if let Some(i) = events.iter().rposition(|e| e.start_unix_ns <= ts) {
                    let e = events[i];
                    let since = (ts - e.start_unix_ns) as f64 / 1e6;
                    let mut c = String::new();
                    if std::mem::take(&mut first_pending[i]) {
                        c.push_str(&format!("first frame after event {} '{}'; ", i + 1, e.name));
                    }
                    c.push_str(&format!(
                        "after event {} '{}' +{since:.3} ms",
                        i + 1,
                        e.name
                    ));
                    // One comment: what decided it, then the event.
                    let old = epb
                        .options
                        .iter()
                        .position(|o| matches!(o, EnhancedPacketOption::Comment(_)));
                    match old.map(|k| epb.options.remove(k)) {
                        Some(EnhancedPacketOption::Comment(before)) => epb.options.insert(
                            0,
                            EnhancedPacketOption::Comment(Cow::Owned(format!("{before}; {c}"))),
                        ),
                        _ => epb
                            .options
                            .insert(0, EnhancedPacketOption::Comment(Cow::Owned(c))),
                    }
                    marked += 1;
                }
            }
            if let Block::SectionHeader(_) = block {
                // One section only: a second header is not ours.
                result = Err(ReportError::Io {
                    path: path.to_owned(),
                    source: io::Error::other("a second section in a leaktest pcapng file"),
                });
                return Err(io::Error::other("a second section"));
            }
            w.write_block(&block)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    })
    .map_err(|e| match std::mem::replace(&mut result, Ok(())) {
        Err(r) => r,
        Ok(()) => ReportError::Io {
            path: path.to_owned(),
            source: io::Error::other(e.to_string()),
        },
    })?;
    let keep = std::fs::set_permissions(path, before.permissions())
        .and_then(|()| std::os::unix::fs::chown(path, Some(before.uid()), Some(before.gid())));
    keep.map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(marked)
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
        let n = w.finish(&CaptureStats {
            received: 1000,
            dropped: 17,
            if_dropped: 3,
        });
        assert_eq!(
            n,
            PcapSummary {
                written: 100,
                offered: 100,
                error: None
            }
        );
        assert_eq!(n.warning(path), None);
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
        // Each drop count in its own option: the kernel's (capture) drops in
        // isb_osdrop, the interface's in isb_ifdrop.
        assert_eq!(opt(7), Some(17), "isb_osdrop");
        assert_eq!(opt(5), Some(3), "isb_ifdrop");
    }

    #[test]
    fn events_are_marked_on_the_frames_after_them() {
        use crate::timeline::Event;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leaks.pcapng");
        let data = frames();
        let mut w = PcapngWriter::create(&path, "ext0").unwrap();
        for (i, d) in data.iter().take(10).enumerate() {
            w.write_with_comment(
                &Frame {
                    ts_sec: 1_700_000_000 + i as u64,
                    ts_nsec: 0,
                    data: d,
                    orig_len: d.len() as u32,
                },
                (i % 2 == 0).then(|| format!("rule {i}")),
            )
            .unwrap();
        }
        assert_eq!(w.finish(&CaptureStats::default()).error, None);
        let ev = |name: &str, at: u64, end: Option<u64>| Event {
            name: name.into(),
            source: "run-at".into(),
            at_s: 0.0,
            start_unix_ns: at,
            end_unix_ns: end,
            exit_code: Some(0),
            problem: None,
        };
        let s = 1_000_000_000u64;
        let start = 1_700_000_000 * s - s / 2;
        // Out of order on purpose; the third has no frame after it.
        let events = [
            ev("reload", 1_700_000_006 * s + s / 2, None),
            ev(
                "nft -f gw.nft",
                1_700_000_002 * s - 40_000_000,
                Some(1_700_000_002 * s),
            ),
            ev("late", 1_700_000_100 * s, None),
        ];
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        assert_eq!(mark_events(&path, &events, start).unwrap(), 8 + 3 - 3);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "the file's mode is kept");
        let bytes = std::fs::read(&path).unwrap();
        let mut comments = Vec::new();
        let mut shb_comment = None;
        let mut isb = false;
        let mut payloads = Vec::new();
        for block in PcapNGSlice::from_slice(&bytes).unwrap() {
            match block.unwrap() {
                PcapBlockOwned::NG(Block::SectionHeader(b)) => {
                    shb_comment = b.options.iter().find(|o| o.code.0 == 1).map(|o| {
                        String::from_utf8(o.value().to_vec())
                            .unwrap()
                            .trim_end_matches('\0')
                            .to_string()
                    })
                }
                PcapBlockOwned::NG(Block::EnhancedPacket(b)) => {
                    payloads.push(b.data[..b.caplen as usize].to_vec());
                    comments.push(b.options.iter().find(|o| o.code.0 == 1).map(|o| {
                        String::from_utf8(o.value().to_vec())
                            .unwrap()
                            .trim_end_matches('\0')
                            .to_string()
                    }))
                }
                PcapBlockOwned::NG(Block::InterfaceStatistics(_)) => isb = true,
                _ => {}
            }
        }
        assert!(isb, "the statistics block is kept");
        assert_eq!(payloads, data[..10].to_vec(), "every frame kept, in order");
        let shb = shb_comment.expect("a section comment");
        assert_eq!(
            shb,
            "leaktest timeline: event 1 'nft -f gw.nft' (run-at) at 2.460 s, ran 40.0 ms, exit 0; \
             event 2 'reload' (run-at) at 7.000 s, exit 0; event 3 'late' (run-at) at 100.500 s, exit 0"
        );
        assert_eq!(comments[0].as_deref(), Some("rule 0"));
        assert_eq!(comments[1], None);
        assert_eq!(
            comments[2].as_deref(),
            Some("rule 2; first frame after event 1 'nft -f gw.nft'; after event 1 'nft -f gw.nft' +40.000 ms")
        );
        assert_eq!(
            comments[3].as_deref(),
            Some("after event 1 'nft -f gw.nft' +1040.000 ms")
        );
        assert_eq!(
            comments[7].as_deref(),
            Some("first frame after event 2 'reload'; after event 2 'reload' +500.000 ms")
        );
        assert_eq!(
            comments[8].as_deref(),
            Some("rule 8; after event 2 'reload' +1500.000 ms")
        );
        // A file that is no pcapng is left as it was.
        let junk = dir.path().join("junk.pcapng");
        std::fs::write(&junk, b"not a capture").unwrap();
        assert!(mark_events(&junk, &events, start).is_err());
        assert_eq!(std::fs::read(&junk).unwrap(), b"not a capture");
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
        assert_eq!(w.finish(&CaptureStats::default()).error, None);
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

    /// A disk that takes `room` bytes, then answers ENOSPC (a short write
    /// first, as a real file system does when the space runs out mid-write).
    struct FullDisk {
        data: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
        room: usize,
    }

    impl BlockSink for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut data = self.data.borrow_mut();
            let n = buf.len().min(self.room - data.len());
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.data.borrow_mut().truncate(len as usize);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The frames of a pcapng image and whether it has a statistics block;
    /// panics unless the image is whole blocks only.
    fn whole_blocks(bytes: &[u8]) -> (Vec<Vec<u8>>, bool) {
        let mut frames = Vec::new();
        let mut stats = false;
        let mut rest = bytes;
        while !rest.is_empty() {
            let (next, block) = pcap_parser::parse_block_le(rest).expect("a whole block");
            match block {
                Block::EnhancedPacket(b) => frames.push(b.data[..b.caplen as usize].to_vec()),
                Block::InterfaceStatistics(_) => stats = true,
                Block::SectionHeader(_) | Block::InterfaceDescription(_) => {}
                _ => panic!("unexpected block"),
            }
            rest = next;
        }
        (frames, stats)
    }

    #[test]
    fn a_full_disk_leaves_whole_blocks_and_says_how_many() {
        // About 1.4 kB per block: 4,000 frames spill the 1 MiB spool five
        // times; each disk below fills at a different point, mid-block.
        let total = 4000u64;
        for room in [
            0usize,
            100,
            SPOOL_BYTES + 5000,
            3 * SPOOL_BYTES + 777,
            8 * SPOOL_BYTES,
        ] {
            let data = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let disk = FullDisk {
                data: data.clone(),
                room,
            };
            let mut w =
                PcapngWriter::with_sink("t.pcapng".into(), disk, "ext0", LinkType::Ethernet)
                    .unwrap();
            let mut errors = 0;
            let mut sent = Vec::new();
            for i in 0..total {
                let frame = vec![(i % 251) as u8; 1300 + (i % 97) as usize];
                let f = Frame {
                    ts_sec: i,
                    ts_nsec: 0,
                    data: &frame,
                    orig_len: frame.len() as u32,
                };
                if w.write_with_comment(&f, Some("leak: test".into())).is_err() {
                    errors += 1;
                }
                sent.push(frame);
            }
            assert_eq!(w.frames(), total);
            let summary = w.finish(&CaptureStats::default());
            let (frames, stats) = whole_blocks(&data.borrow());
            assert_eq!(summary.offered, total, "room {room}");
            assert_eq!(summary.written, frames.len() as u64, "room {room}");
            // What is in the file is exactly the first frames, in order.
            assert_eq!(frames[..], sent[..frames.len()], "room {room}");
            if room == 8 * SPOOL_BYTES {
                assert_eq!((summary.written, errors, stats), (total, 0, true));
                assert_eq!(summary.error, None);
                continue;
            }
            assert!(!stats, "room {room}: no statistics block after a failure");
            assert!(summary.written < total, "room {room}: {summary:?}");
            assert_eq!(errors, 1, "room {room}: one error, at the failing write");
            let warning = summary.warning(Path::new("t.pcapng")).unwrap();
            assert!(
                warning.starts_with(&format!(
                    "pcap truncated: {} of {total} frames written to t.pcapng (",
                    summary.written
                )),
                "{warning}"
            );
            assert!(warning.contains("No space left on device"), "{warning}");
        }
    }
}
