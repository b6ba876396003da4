//! A TCP proxy that can cut the network between its clients and its target, as a partition
//! that drops packets would: while cut, connections stay open and nothing moves either way,
//! and a new connection is accepted (the proxy's kernel does that; a real partition would
//! leave the connect hanging instead) but reaches nothing; on heal, everything held moves on,
//! in order, as TCP's retransmissions would deliver it.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The proxy, forwarding `127.0.0.1:<port>` to its target until dropped.
pub struct Partition {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Partition {
    pub async fn start(target: SocketAddr) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let watcher = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, target, watcher.subscribe()));
            }
        });
        Partition { addr, cut, task }
    }

    /// From now on nothing moves.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Everything moves again, what was held first.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: connects to `target` once the network is whole, then moves bytes both ways.
async fn forward(client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    if !whole(&mut cut).await {
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    tokio::join!(
        pump(from_client, to_server, cut.clone()),
        pump(from_server, to_client, cut)
    );
}

/// Moves bytes from `from` to `to` while the network is whole, until either end closes.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut cut: watch::Receiver<bool>) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        if !whole(&mut cut).await {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            // Cut while waiting: stop reading, so the bytes wait in the kernel.
            _ = cut.changed() => continue,
        };
        // Read just as the cut came: held until the heal, like a packet in flight.
        if !whole(&mut cut).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

/// Waits until the network is whole; false when the proxy is gone.
async fn whole(cut: &mut watch::Receiver<bool>) -> bool {
    cut.wait_for(|cut| !cut).await.is_ok()
}
