//! Property tests: nothing Tor (or an impostor on its port) sends can make the parsers panic,
//! and data blocks survive dot-stuffing exactly.

use leaktest_tor::allowlist::{
    parse_bridge_line, parse_config_defaults, parse_dir_server_line, parse_ns_all, parse_proxy,
};
use leaktest_tor::auth::{AuthChallenge, ProtocolInfo};
use leaktest_tor::client::{getconf_values, getinfo_values};
use leaktest_tor::reply::{key_values, parse_replies, quote, unquote_prefix};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(replies) = parse_replies(&bytes) {
            for r in &replies {
                let _ = ProtocolInfo::parse(r);
                let _ = AuthChallenge::parse(r);
                let _ = getinfo_values(r);
                let _ = getconf_values(r);
                let _ = r.event_name();
            }
        }
    }

    #[test]
    fn status_shaped_lines_never_panic(
        lines in proptest::collection::vec(("[0-9]{3}", "[-+ .]", "[ -~]{0,40}"), 0..12)
    ) {
        let mut wire = String::new();
        for (code, sep, text) in &lines {
            wire.push_str(&format!("{code}{sep}{text}\r\n"));
        }
        let _ = parse_replies(wire.as_bytes());
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        let _ = parse_ns_all(&s);
        let _ = parse_config_defaults(&s);
        let _ = parse_dir_server_line(&s);
        let _ = parse_bridge_line(&s);
        let _ = parse_proxy(&s, 443);
        let _ = key_values(&s);
        let _ = unquote_prefix(&s);
        let _ = unquote_prefix(&format!("\"{s}"));
    }

    #[test]
    fn data_blocks_round_trip(lines in proptest::collection::vec("[ -~]{0,30}", 0..20)) {
        // Encode as Tor does: a leading '.' is doubled; a lone '.' ends the block.
        let mut wire = String::from("250+key=\r\n");
        for l in &lines {
            if l.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(l);
            wire.push_str("\r\n");
        }
        wire.push_str(".\r\n250 OK\r\n");
        let replies = parse_replies(wire.as_bytes()).unwrap();
        prop_assert_eq!(replies.len(), 1);
        let values = getinfo_values(&replies[0]);
        prop_assert_eq!(values.len(), 1);
        prop_assert_eq!(&values[0].1, &lines.join("\n"));
    }

    #[test]
    fn quoting_round_trips(s in "\\PC{0,60}") {
        let q = quote(&s);
        let (back, rest) = unquote_prefix(&q).unwrap();
        prop_assert_eq!(back, s);
        prop_assert_eq!(rest, "");
    }
}
