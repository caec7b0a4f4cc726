//! The lab internet's destinations: a tiny HTTP server that tells each client
//! the address it came from (and logs it), and a tiny authoritative DNS
//! server for the lab domain (the exits' only resolver). Plus the matching
//! clients that the lab runs from the workstation to prove the gateway works.

use crate::plan::{WEB4, WEB6, WEB_NAME, WEB_PORT};
use crate::LabError;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers `GET` with `leaktest-lab TOKEN you-are PEER` and appends `PEER` to
/// `log`. Returns when `stop` is set.
pub fn serve_web(
    listeners: Vec<TcpListener>,
    token: String,
    log: PathBuf,
    stop: Arc<AtomicBool>,
) -> Result<(), LabError> {
    for l in &listeners {
        l.set_nonblocking(true)
            .map_err(|e| LabError::Io("web listener".into(), e))?;
    }
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        for l in &listeners {
            match l.accept() {
                Ok((s, peer)) => {
                    idle = false;
                    // One request per connection, bounded in size and time.
                    let _ = handle_http(s, peer.ip(), &token, &log);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {}
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

fn handle_http(mut s: TcpStream, peer: IpAddr, token: &str, log: &PathBuf) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    writeln!(f, "{peer}")?;
    let body = format!("leaktest-lab {token} you-are {peer}\n");
    write!(s, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    Ok(())
}

/// Binds the web server's listeners (call inside the `net` namespace).
pub fn bind_web() -> Result<Vec<TcpListener>, LabError> {
    [
        SocketAddr::from((WEB4, WEB_PORT)),
        SocketAddr::from((WEB6, WEB_PORT)),
    ]
    .into_iter()
    .map(|a| {
        TcpListener::bind(a).map_err(|e| LabError::Io(format!("binding web server on {a}"), e))
    })
    .collect()
}

/// Binds the DNS server's socket on `addr:53` (inside the `net` namespace).
pub fn bind_dns(addr: Ipv4Addr) -> Result<UdpSocket, LabError> {
    UdpSocket::bind((addr, 53))
        .map_err(|e| LabError::Io(format!("binding DNS server on {addr}:53"), e))
}

/// Answers A/AAAA queries for [`WEB_NAME`]; NXDOMAIN for other names.
pub fn serve_dns(sock: UdpSocket, stop: Arc<AtomicBool>) -> Result<(), LabError> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| LabError::Io("dns socket".into(), e))?;
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, peer)) => {
                if let Some(reply) = dns_reply(&buf[..n]) {
                    let _ = sock.send_to(&reply, peer);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {}
        }
    }
    Ok(())
}

/// Parses the question of a DNS message: (name in lower case, type, end offset).
fn dns_question(msg: &[u8]) -> Option<(String, u16, usize)> {
    if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *msg.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression is not used in questions we accept
        }
        labels.push(
            std::str::from_utf8(msg.get(i..i + len)?)
                .ok()?
                .to_ascii_lowercase(),
        );
        i += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    let _qclass = msg.get(i + 2..i + 4)?;
    Some((labels.join("."), qtype, i + 4))
}

/// The reply to a query, or `None` for something that is not a query.
pub fn dns_reply(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    let (name, qtype, end) = dns_question(q)?;
    let rdata: Option<Vec<u8>> = match (name == WEB_NAME, qtype) {
        (true, 1) => Some(WEB4.octets().to_vec()),
        (true, 28) => Some(WEB6.octets().to_vec()),
        _ => None,
    };
    let rcode = if name == WEB_NAME { 0 } else { 3 };
    let mut r = Vec::with_capacity(end + 32);
    r.extend_from_slice(&q[0..2]);
    r.push(0x84 | (q[2] & 0x01)); // QR, AA, copy RD
    r.push(rcode);
    r.extend_from_slice(&[0, 1, 0, rdata.is_some() as u8, 0, 0, 0, 0]);
    r.extend_from_slice(&q[12..end]);
    if let Some(d) = rdata {
        r.extend_from_slice(&[0xc0, 0x0c]);
        r.extend_from_slice(&qtype.to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        r.extend_from_slice(&(d.len() as u16).to_be_bytes());
        r.extend_from_slice(&d);
    }
    Some(r)
}

/// A DNS query for `name` of type `qtype` with id `id`.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0]);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// Reads the first A or AAAA answer of a reply to query `id`.
pub fn dns_answer(id: u16, r: &[u8]) -> Option<IpAddr> {
    if r.len() < 12 || r[0..2] != id.to_be_bytes() || r[2] & 0x80 == 0 || r[3] & 0x0f != 0 {
        return None;
    }
    let ancount = u16::from_be_bytes([r[6], r[7]]);
    let (_, _, mut i) = dns_question(&{
        // dns_question wants a query-shaped header; reuse it on the reply.
        let mut c = r.to_vec();
        c[2] &= 0x7f;
        c
    })?;
    for _ in 0..ancount {
        // Name: a pointer or labels.
        loop {
            let b = *r.get(i)?;
            if b & 0xc0 == 0xc0 {
                i += 2;
                break;
            }
            i += 1 + b as usize;
            if b == 0 {
                break;
            }
        }
        let t = u16::from_be_bytes([*r.get(i)?, *r.get(i + 1)?]);
        let len = u16::from_be_bytes([*r.get(i + 8)?, *r.get(i + 9)?]) as usize;
        let d = r.get(i + 10..i + 10 + len)?;
        i += 10 + len;
        match (t, len) {
            (1, 4) => return Some(IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]))),
            (28, 16) => return Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(d).ok()?))),
            _ => {}
        }
    }
    None
}

/// Whether a resolver at `dns` answers at all within `timeout`: a TXT
/// question for a name under `.invalid` (tor's DNSPort refuses TXT at once
/// with NOTIMPL; any resolver answers something). `Err(TimedOut)` if not.
pub fn dns_answers(dns: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let sock = UdpSocket::bind(if dns.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    sock.set_read_timeout(Some(timeout))?;
    let id = 0x4c43;
    sock.send_to(&dns_query(id, "gateway-check.leaktest.invalid", 16), dns)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == dns && n >= 12 && buf[0..2] == id.to_be_bytes() => {
                return Ok(())
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer in {timeout:?}"),
    ))
}

/// What the workstation saw when it used the gateway.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Fetch {
    pub resolved: IpAddr,
    /// The address the web server says the request came from.
    pub seen_as: IpAddr,
    pub millis: u128,
}

/// From the workstation: resolves [`WEB_NAME`] through `dns` (UDP 53) and
/// fetches `/` over TCP port 80. Retries until `timeout`.
pub fn fetch_through(dns: SocketAddr, token: &str, timeout: Duration) -> Result<Fetch, LabError> {
    let start = Instant::now();
    let mut last_err = String::from("no attempt");
    let mut id: u16 = 0x4c54;
    while start.elapsed() < timeout {
        id = id.wrapping_add(1);
        match fetch_once(dns, token, id) {
            Ok((resolved, seen_as)) => {
                return Ok(Fetch {
                    resolved,
                    seen_as,
                    millis: start.elapsed().as_millis(),
                })
            }
            Err(e) => last_err = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(LabError::Tor(format!(
        "the workstation could not fetch http://{WEB_NAME}/ through the gateway: {last_err}"
    )))
}

/// Fetches the lab's page through the SOCKS5 proxy at `socks` (tor's
/// SocksPort), the name resolved by the proxy (an exit). Retries until
/// `timeout`.
pub fn fetch_socks(socks: SocketAddr, token: &str, timeout: Duration) -> Result<Fetch, LabError> {
    let start = Instant::now();
    let mut last_err = String::from("no attempt");
    while start.elapsed() < timeout {
        let r = socks::Socks5Stream::connect(socks, (WEB_NAME, WEB_PORT))
            .map_err(|e| format!("SOCKS connect to {WEB_NAME}:{WEB_PORT} via {socks}: {e}"))
            .and_then(|s| page(s.into_inner(), token));
        match r {
            Ok(seen_as) => {
                return Ok(Fetch {
                    resolved: IpAddr::V4(WEB4),
                    seen_as,
                    millis: start.elapsed().as_millis(),
                })
            }
            Err(e) => last_err = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(LabError::Tor(format!(
        "could not fetch http://{WEB_NAME}/ through tor's SocksPort {socks}: {last_err}"
    )))
}

fn fetch_once(dns: SocketAddr, token: &str, id: u16) -> Result<(IpAddr, IpAddr), String> {
    let sock = UdpSocket::bind(if dns.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
        .map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    sock.send_to(&dns_query(id, WEB_NAME, 1), dns)
        .map_err(|e| format!("DNS send: {e}"))?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).map_err(|e| format!("DNS: {e}"))?;
    let ip = dns_answer(id, &buf[..n]).ok_or("DNS reply without an address")?;
    let s = TcpStream::connect_timeout(&SocketAddr::new(ip, 80), Duration::from_secs(5))
        .map_err(|e| format!("connect {ip}:80: {e}"))?;
    Ok((ip, page(s, token)?))
}

/// GETs `/` on a connected stream and reads the address the lab's web
/// server says the request came from.
fn page(mut s: TcpStream, token: &str) -> Result<IpAddr, String> {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET / HTTP/1.0\r\nHost: {WEB_NAME}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.take(4096)
        .read_to_string(&mut resp)
        .map_err(|e| format!("HTTP read: {e}"))?;
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .ok_or("HTTP reply without a body")?;
    let mut w = body.split_whitespace();
    if w.next() != Some("leaktest-lab") || w.next() != Some(token) || w.next() != Some("you-are") {
        return Err(format!("unexpected page: {body:?}"));
    }
    let seen: IpAddr = w
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or("page without an address")?;
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_reply_round_trip() {
        let q = dns_query(0x1234, WEB_NAME, 1);
        let r = dns_reply(&q).unwrap();
        assert_eq!(dns_answer(0x1234, &r), Some(IpAddr::V4(WEB4)));
        let q6 = dns_query(7, &WEB_NAME.to_uppercase(), 28);
        assert_eq!(
            dns_answer(7, &dns_reply(&q6).unwrap()),
            Some(IpAddr::V6(WEB6))
        );
        let other = dns_reply(&dns_query(9, "example.test", 1)).unwrap();
        assert_eq!(other[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(dns_answer(9, &other), None);
        assert_eq!(dns_answer(8, &r), None, "wrong id");
    }

    #[test]
    fn dns_never_panics_on_garbage() {
        let mut x: u32 = 1;
        for len in 0..200 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = dns_reply(&v);
            let _ = dns_answer(0, &v);
        }
        assert_eq!(dns_reply(&[]), None);
    }

    #[test]
    fn web_server_reports_the_peer() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("leaktest-lab-weblog-{}", std::process::id()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, l2) = (stop.clone(), log.clone());
        let t = std::thread::spawn(move || serve_web(vec![l], "tok".into(), l2, s2));
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(c, "GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(
            resp.ends_with("leaktest-lab tok you-are 127.0.0.1\n"),
            "{resp}"
        );
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "127.0.0.1\n");
        std::fs::remove_file(log).unwrap();
    }
}
