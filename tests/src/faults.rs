//! A TCP proxy between the suite and one of its dependencies that a test
//! can cut, stall, slow down, close to new connections and restore, so a
//! dependency can "go away" without touching the machine's shared services.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes flow.
    Pass,
    /// Every open connection is closed; new ones are closed at once.
    Cut,
    /// Connections stay open (and new ones are accepted) but no byte moves:
    /// a hung server or a black-holed network.
    Stall,
    /// Open connections go on; new ones are closed at once (a server at
    /// its connection limit, a half-broken network path).
    Refuse,
    /// Every chunk waits this long before it goes on.
    Slow(Duration),
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl FaultProxy {
    /// A proxy to `target`, passing bytes until told otherwise.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (mode, watching) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watching = watching.clone();
                tokio::spawn(relay(client, target, watching));
            }
        });
        FaultProxy { addr, mode }
    }

    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    pub fn refuse_new(&self) {
        self.mode.send_replace(Mode::Refuse);
    }

    pub fn slow(&self, latency: Duration) {
        self.mode.send_replace(Mode::Slow(latency));
    }

    pub fn restore(&self) {
        self.mode.send_replace(Mode::Pass);
    }

    /// A proxy to the server `url` names (its host resolved now).
    pub async fn to_url(url: &str) -> FaultProxy {
        let parsed = url::Url::parse(url).expect("url");
        let host = parsed.host_str().expect("host");
        let port = parsed.port_or_known_default().expect("port");
        let mut addrs = tokio::net::lookup_host((host, port)).await.expect("resolves");
        FaultProxy::start(addrs.next().expect("an address")).await
    }

    /// `url` with its host and port replaced by this proxy's.
    pub fn in_url(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).expect("url");
        parsed.set_ip_host(self.addr.ip()).expect("host");
        parsed.set_port(Some(self.addr.port())).expect("port");
        parsed.to_string()
    }
}

async fn relay(client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    if *mode.borrow() == Mode::Refuse || !wait_to_pass(&mut mode).await {
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else { return };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(pump(client_read, server_write, mode.clone()), pump(server_read, client_write, mode));
}

/// Waits while stalled (or as long as the latency says); `false` once cut.
async fn wait_to_pass(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        let now = *mode.borrow_and_update();
        match now {
            Mode::Pass | Mode::Refuse => return true,
            Mode::Cut => return false,
            Mode::Slow(latency) => {
                tokio::time::sleep(latency).await;
                return true;
            }
            Mode::Stall => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == Mode::Cut {
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // Bytes read while stalled are held until the stall ends.
        if !wait_to_pass(&mut mode).await || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
