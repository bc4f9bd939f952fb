//! A loopback TCP proxy a test can cut and restore, to make a dependency (S3, OpenBao)
//! unavailable for a while without losing its data: while cut, the port is closed (connections
//! are refused) and every open connection is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A proxy from `127.0.0.1:<port>` to `target`.
pub struct TcpProxy {
    /// The address clients connect to.
    pub address: SocketAddr,
    target: String,
    state: Arc<Mutex<Running>>,
}

#[derive(Default)]
struct Running {
    acceptor: Option<JoinHandle<()>>,
    connections: Vec<JoinHandle<()>>,
}

impl TcpProxy {
    /// Starts a proxy to `target` (`host:port`) on a free port.
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let proxy = Self { address, target: target.to_owned(), state: Arc::default() };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let target = self.target.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let connection = tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                if let Ok(mut running) = state.lock() {
                    running.connections.retain(|c| !c.is_finished());
                    running.connections.push(connection);
                }
            }
        });
        if let Ok(mut running) = self.state.lock() {
            running.acceptor = Some(acceptor);
        }
    }

    /// Closes the port and drops every open connection.
    pub async fn cut(&self) {
        let handles: Vec<JoinHandle<()>> = {
            let mut running = self.state.lock().expect("proxy state");
            running.acceptor.take().into_iter().chain(running.connections.drain(..)).collect()
        };
        for handle in handles {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Opens the port again (same address).
    pub async fn restore(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "cannot rebind {}: {e}", self.address);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        };
        self.serve(listener);
    }
}
