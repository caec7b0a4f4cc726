//! End-to-end tests of leaktest-netns against the real kernel (needs root).
//!
//! Every test uses its own `unique_prefix`, so they run in parallel; all traffic stays on
//! veth pairs between namespaces the test created, on 203.0.113.0/24 and 2001:db8::/64.

use leaktest_netns::{cleanup_prefix, exists, pid_alive, unique_prefix, veth, Netns, Topology};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

fn host_has_link(ifname: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", ifname])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Two namespaces `a`/`b` joined by veth `<p>a`/`<p>b`, 203.0.113.1-2/24, 2001:db8::1-2/64.
fn pair(topo: &mut Topology) -> (std::sync::Arc<Netns>, std::sync::Arc<Netns>, String, String) {
    let a = topo.add("a").unwrap();
    let b = topo.add("b").unwrap();
    let (ia, ib) = (format!("{}a", topo.prefix()), format!("{}b", topo.prefix()));
    veth(&a, &ia, &b, &ib).unwrap();
    a.add_addr(&ia, "203.0.113.1/24").unwrap();
    b.add_addr(&ib, "203.0.113.2/24").unwrap();
    a.add_addr(&ia, "2001:db8::1/64").unwrap();
    b.add_addr(&ib, "2001:db8::2/64").unwrap();
    (a, b, ia, ib)
}

#[test]
fn create_and_delete_on_drop() {
    let name = format!("{}x", unique_prefix("ltn"));
    {
        let ns = Netns::create(&name).unwrap();
        assert!(exists(&name));
        assert_eq!(ns.name(), name);
        // lo is up from the start.
        let out = ns.ip(["-o", "link", "show", "dev", "lo"]).unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("UP"));
        // A second namespace of the same name is refused (never adopt somebody else's).
        assert!(Netns::create(&name).is_err());
    }
    assert!(!exists(&name), "namespace survived its drop");
}

#[test]
fn explicit_delete_is_idempotent_and_blocks_use() {
    let name = format!("{}x", unique_prefix("ltn"));
    let ns = Netns::create(&name).unwrap();
    ns.delete().unwrap();
    assert!(!exists(&name));
    ns.delete().unwrap();
    assert!(ns.link_up("lo").is_err());
    assert!(ns.spawn(ns.command("true")).is_err());
}

#[test]
fn veth_lives_only_in_namespaces_and_pings() {
    let mut topo = Topology::new("ltn");
    let (a, b, ia, ib) = pair(&mut topo);
    assert!(
        !host_has_link(&ia) && !host_has_link(&ib),
        "veth end in host namespace"
    );
    for (ns, target) in [
        (&a, "203.0.113.2"),
        (&b, "203.0.113.1"),
        (&a, "2001:db8::2"),
    ] {
        let mut c = ns.command("ping");
        c.args(["-c", "1", "-W", "1", "-n", "-q", target]);
        let out = ns.exec(c).unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 received"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The MAC seen from inside matches what the peer learnt as neighbour.
    let mac_b = b.mac(&ib).unwrap();
    let neigh = a.ip(["neigh", "show", "203.0.113.2"]).unwrap();
    let text = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    let want = mac_b
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(text.contains(&want), "{text} lacks {want}");
    let prefix = topo.prefix().to_string();
    drop(topo);
    assert!(!exists(&format!("{prefix}a")) && !exists(&format!("{prefix}b")));
}

#[test]
fn unreachable_without_veth() {
    // Control for the ping test: the same ping across unconnected namespaces fails.
    let mut topo = Topology::new("ltn");
    let a = topo.add("a").unwrap();
    let mut c = a.command("ping");
    c.args(["-c", "1", "-W", "1", "-n", "-q", "203.0.113.2"]);
    assert!(a.exec(c).is_err());
}

#[test]
fn run_in_sockets_live_in_the_namespace() {
    let mut topo = Topology::new("ltn");
    let (a, b, _, _) = pair(&mut topo);
    // The host has no 203.0.113.1, so binding there only works inside `a`.
    assert!(UdpSocket::bind("203.0.113.1:0").is_err());
    let server = b
        .run_in(|| UdpSocket::bind("203.0.113.2:40000"))
        .unwrap()
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        server.send_to(&buf[..n], from).unwrap();
        from
    });
    let client = a.thread(|| {
        let s = UdpSocket::bind("203.0.113.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send_to(b"hello ns", "203.0.113.2:40000").unwrap();
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    assert_eq!(client.unwrap().join().unwrap(), b"hello ns");
    let from = echo.join().unwrap();
    assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)));
    // A panic inside run_in is reported, not propagated.
    assert!(a.run_in(|| panic!("inside")).is_err());
}

#[test]
fn sysctl_is_per_namespace() {
    let mut topo = Topology::new("ltn");
    let a = topo.add("a").unwrap();
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let flip = if host_before.trim() == "1" { "0" } else { "1" };
    a.sysctl("net.ipv4.ip_forward", flip).unwrap();
    assert_eq!(a.sysctl_get("net.ipv4.ip_forward").unwrap(), flip);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_before,
        "sysctl leaked into the host namespace"
    );
    a.sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
    assert_eq!(a.sysctl_get("net.ipv6.conf.all.accept_dad").unwrap(), "0");
    assert!(a.sysctl("net.ipv4.no_such_key", "1").is_err());
}

#[test]
fn tracked_processes_end_with_their_namespace() {
    let ns = Netns::create(&format!("{}x", unique_prefix("ltn"))).unwrap();
    // A shell that forks a grandchild: the whole process group must go.
    let mut c = ns.command("sh");
    c.args(["-c", "sleep 30 & wait"]);
    let p = ns.spawn(c).unwrap();
    let pid = p.pid();
    p.detach();
    // Wait (bounded) until the grandchild exists inside the namespace.
    let mut pids = Vec::new();
    for _ in 0..200 {
        pids = ns.pids().unwrap();
        if pids.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    assert!(pids.len() >= 2, "grandchild not seen: {pids:?}");
    assert_eq!(ns.tracked_pids(), vec![pid]);
    drop(ns);
    for p in pids {
        assert!(!pid_alive(p), "pid {p} survived");
    }
}

#[test]
fn proc_handle_waits_and_terminates() {
    let ns = Netns::create(&format!("{}x", unique_prefix("ltn"))).unwrap();
    let mut c = ns.command("sh");
    c.args(["-c", "exit 3"]);
    let p = ns.spawn(c).unwrap();
    let st = p.wait_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(st.code(), Some(3));
    // Reaped: never signalled again.
    assert!(p.signal(libc_sigterm()).is_err());
    let mut c = ns.command("sleep");
    c.arg("30");
    let p = ns.spawn(c).unwrap();
    let pid = p.pid();
    assert!(p.is_running());
    let st = p.terminate(Duration::from_secs(1)).unwrap();
    assert!(!st.success());
    assert!(!pid_alive(pid));
    assert!(ns.tracked_pids().is_empty());
}

fn libc_sigterm() -> i32 {
    15
}

#[test]
fn panic_unwinding_cleans_up() {
    let prefix = unique_prefix("ltn");
    let p2 = prefix.clone();
    let pid = std::sync::Arc::new(std::sync::Mutex::new(0u32));
    let pid2 = pid.clone();
    let r = std::panic::catch_unwind(move || {
        let mut topo = Topology::with_prefix(p2);
        let a = topo.add("a").unwrap();
        let b = topo.add("b").unwrap();
        veth(&a, "lta0", &b, "ltb0").unwrap();
        let mut c = a.command("sleep");
        c.arg("30");
        let p = a.spawn(c).unwrap();
        *pid2.lock().unwrap() = p.pid();
        p.detach();
        panic!("test failure inside a topology");
    });
    assert!(r.is_err());
    assert!(!exists(&format!("{prefix}a")));
    assert!(!exists(&format!("{prefix}b")));
    assert!(!pid_alive(*pid.lock().unwrap()));
}

#[test]
fn cleanup_prefix_removes_leftovers_and_their_processes() {
    let prefix = unique_prefix("ltn");
    let other = unique_prefix("ltn");
    let keep_other = Netns::create(&format!("{other}z")).unwrap();
    let mut leftover_pid = 0;
    for s in ["a", "b"] {
        let ns = Netns::create(&format!("{prefix}{s}")).unwrap();
        ns.keep(); // as if the run crashed
        if s == "a" {
            // An untracked process left behind inside the namespace.
            let mut c = ns.command("sleep");
            c.arg("30");
            let child = c.spawn().unwrap();
            leftover_pid = child.id();
            // Reap it in the background once cleanup ends it (it is our child).
            std::thread::spawn(move || {
                let mut child = child;
                let _ = child.wait();
            });
        }
    }
    assert!(exists(&format!("{prefix}a")) && exists(&format!("{prefix}b")));
    let mut removed = cleanup_prefix(&prefix).unwrap();
    removed.sort();
    assert_eq!(removed, vec![format!("{prefix}a"), format!("{prefix}b")]);
    assert!(!exists(&format!("{prefix}a")) && !exists(&format!("{prefix}b")));
    assert!(
        exists(keep_other.name()),
        "other run's namespace was touched"
    );
    for _ in 0..100 {
        if !pid_alive(leftover_pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!pid_alive(leftover_pid));
    // Nothing left: a second sweep removes nothing.
    assert!(cleanup_prefix(&prefix).unwrap().is_empty());
}

#[test]
fn routes_across_a_router_namespace() {
    // a (198.51.100.2) -> r (forwarding) -> b (203.0.113.2): route_add and sysctl together.
    let mut topo = Topology::new("ltn");
    let a = topo.add("a").unwrap();
    let r = topo.add("r").unwrap();
    let b = topo.add("b").unwrap();
    let p = topo.prefix().to_string();
    veth(&a, &format!("{p}a"), &r, &format!("{p}ra")).unwrap();
    veth(&b, &format!("{p}b"), &r, &format!("{p}rb")).unwrap();
    a.add_addr(&format!("{p}a"), "198.51.100.2/24").unwrap();
    r.add_addr(&format!("{p}ra"), "198.51.100.1/24").unwrap();
    r.add_addr(&format!("{p}rb"), "203.0.113.1/24").unwrap();
    b.add_addr(&format!("{p}b"), "203.0.113.2/24").unwrap();
    a.route_add("default", Some("198.51.100.1".parse().unwrap()), None)
        .unwrap();
    b.route_add(
        "198.51.100.0/24",
        Some("203.0.113.1".parse().unwrap()),
        None,
    )
    .unwrap();
    let ping = |ns: &Netns| {
        let mut c = ns.command("ping");
        c.args(["-c", "1", "-W", "1", "-n", "-q", "203.0.113.2"]);
        ns.exec(c).is_ok()
    };
    r.sysctl("net.ipv4.ip_forward", "0").unwrap();
    assert!(!ping(&a), "forwarded although forwarding is off");
    r.sysctl("net.ipv4.ip_forward", "1").unwrap();
    assert!(ping(&a));
}

/// The inode of a network namespace file: equal inodes, same namespace.
fn ns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn by_name_helpers_work_inside_a_namespace_they_do_not_own() {
    let name = format!("{}n", unique_prefix("ltn"));
    let ns = Netns::create(&name).unwrap();
    let want = ns_inode(&format!("/run/netns/{name}"));
    // A closure on a thread that joined it, borrowing from the caller.
    let here = "/proc/thread-self/ns/net";
    assert_eq!(
        leaktest_netns::run_in_named(&name, || ns_inode(here)).unwrap(),
        want
    );
    // A background thread.
    let h = leaktest_netns::thread_in_named(&name, "t", move || ns_inode(here)).unwrap();
    assert_eq!(h.join().unwrap(), want);
    // A command whose own PID joined it (no `ip netns exec` in between).
    let out = leaktest_netns::command_in(&name, "readlink")
        .unwrap()
        .arg("/proc/self/ns/net")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("net:[{want}]")
    );
    // A sysctl of the namespace, not the host's.
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let flipped = if host.trim() == "1" { "0" } else { "1" };
    leaktest_netns::sysctl_in(&name, "net.ipv4.ip_forward", flipped).unwrap();
    assert_eq!(ns.sysctl_get("net.ipv4.ip_forward").unwrap(), flipped);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host
    );
    // None of them owns it: the namespace is still there, and is the guard's to delete.
    assert!(exists(&name));
    drop(ns);
    assert!(!exists(&name));
    // A namespace that does not exist is an error, and the closure never runs.
    let ran = std::sync::atomic::AtomicBool::new(false);
    assert!(leaktest_netns::run_in_named(&name, || ran
        .store(true, std::sync::atomic::Ordering::SeqCst))
    .is_err());
    assert!(leaktest_netns::thread_in_named(&name, "t", || ()).is_err());
    assert!(leaktest_netns::command_in(&name, "true").is_err());
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
}
