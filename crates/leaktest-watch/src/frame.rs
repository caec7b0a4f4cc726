//! Captured frames and capture counters, as DESIGN.md defines them for
//! leaktest-capture. Kept here only until that crate provides them; then
//! this module re-exports them.

/// One captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub ts_sec: u64,
    pub ts_nsec: u32,
    pub data: &'a [u8],
    pub orig_len: u32,
}

/// The kernel's counters at the end of a capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub received: u64,
    pub dropped: u64,
    pub if_dropped: u64,
}
