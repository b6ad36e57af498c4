//! Every listener turns Nagle's algorithm off on what it accepts: with it
//! on, a small answer waits for the client's delayed ACK, and a cached read
//! took 44 ms instead of under one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use offers_tests::{Backend, TestSuite};
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};

/// The inode of the socket in this process whose local port is `local` and
/// whose peer's port is `peer`, from /proc/self/net/tcp and tcp6.
fn inode_of(local: u16, peer: u16) -> Option<u64> {
    let port = |field: &str| field.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && port(fields[1]) == Some(local) && port(fields[2]) == Some(peer) {
                return fields[9].parse().ok();
            }
        }
    }
    None
}

/// The descriptor of socket `inode` in this process, if it has one yet.
fn fd_of(inode: u64) -> Option<RawFd> {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd").ok()?.flatten().find_map(|entry| {
        let target = std::fs::read_link(entry.path()).ok()?;
        (target.to_string_lossy() == wanted).then(|| entry.file_name().to_string_lossy().parse().ok()).flatten()
    })
}

/// Whether the server's end of `client` (a connection to `listener`) has
/// `TCP_NODELAY`, read from a duplicate of its descriptor.
fn server_end_nodelay(listener: SocketAddr, client: &TcpStream) -> Option<bool> {
    let inode = inode_of(listener.port(), client.local_addr().ok()?.port())?;
    let fd = fd_of(inode)?;
    let me = pidfd_open(Pid::from_raw(i32::try_from(std::process::id()).ok()?)?, PidfdFlags::empty()).ok()?;
    let duplicate = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()).ok()?;
    TcpStream::from(duplicate).nodelay().ok()
}

/// Connects and sends an HTTP/1.1 request (every listener takes HTTP/1.1:
/// the edge, the operational endpoints, gRPC with gRPC-Web), and reads the
/// start of the answer: by then the server has accepted the connection.
fn connected(listener: SocketAddr) -> TcpStream {
    let mut client = TcpStream::connect(listener).expect("connect");
    client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    client.write_all(format!("GET /livez HTTP/1.1\r\nHost: {listener}\r\n\r\n").as_bytes()).expect("send");
    let mut start = [0u8; 12];
    client.read_exact(&mut start).expect("an answer");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_sets_tcp_nodelay() {
    let Some(suite) = TestSuite::spawn(Backend::Embedded).await else { return };
    for (name, listener) in
        [("REST edge", suite.http_addr), ("public gRPC", suite.grpc_addr), ("internal gRPC", suite.internal_grpc_addr)]
    {
        let nodelay = tokio::task::spawn_blocking(move || {
            let client = connected(listener);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match server_end_nodelay(listener, &client) {
                    Some(nodelay) => return Some(nodelay),
                    None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    None => return None,
                }
            }
        })
        .await
        .expect("joined");
        assert_eq!(nodelay, Some(true), "the {name} listener ({listener}) accepts with TCP_NODELAY");
    }
    suite.stop().await;
}
