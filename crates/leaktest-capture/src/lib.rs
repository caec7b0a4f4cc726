//! Capture of outbound frames with libpcap (TPACKET_V3 ring, kernel-side direction), kernel drop counters, and canary frames that prove the capture sees.
