//! A TLS accept loop that any listener reuses (HTTPS, MQTT).
//!
//! [`Server`] owns what the listeners share: one connection cap (a
//! semaphore: further clients wait in the kernel's backlog, so stalled
//! clients cannot exhaust file descriptors and wedge `accept`), the count of
//! open connections and the shutdown signal. [`Server::listen`] runs one
//! listener: accept, handshake within a timeout (a truncated handshake must
//! not hold a task forever), capture the client chain, then hand the stream
//! to the protocol's connection handler with a [`Stop`] it watches for a
//! graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::http::PeerChain;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Tells a connection handler that the emulator is shutting down.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once shutdown has begun.
    pub async fn stopped(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// What the listeners of one emulator share.
pub struct Server {
    slots: Arc<Semaphore>,
    active: Arc<AtomicUsize>,
    stop_tx: watch::Sender<bool>,
}

impl Server {
    /// A server that holds at most `max_connections` open at once, over all listeners.
    pub fn new(max_connections: usize) -> Server {
        Server {
            slots: Arc::new(Semaphore::new(max_connections)),
            active: Arc::new(AtomicUsize::new(0)),
            stop_tx: watch::channel(false).0,
        }
    }

    /// Accepts TLS connections on `listener` until shutdown; each one is
    /// served by `handler(stream, peer_chain, stop)` in its own task.
    pub fn listen<H, F>(
        &self,
        listener: TcpListener,
        acceptor: TlsAcceptor,
        handler: H,
    ) -> tokio::task::JoinHandle<()>
    where
        H: Fn(TlsStream<TcpStream>, PeerChain, Stop) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let slots = self.slots.clone();
        let active = self.active.clone();
        let mut stop = Stop(self.stop_tx.subscribe());
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = stop.stopped() => break,
                };
                let tcp = tokio::select! {
                    r = listener.accept() => match r {
                        Ok((c, _)) => c,
                        // Out of file descriptors and the like: back off instead of spinning.
                        Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
                    },
                    () = stop.stopped() => break,
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                let conn_stop = stop.clone();
                let active = active.clone();
                active.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // A failed or truncated handshake just drops the connection.
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    {
                        let peer = PeerChain(Arc::new(
                            tls.get_ref()
                                .1
                                .peer_certificates()
                                .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                                .unwrap_or_default(),
                        ));
                        handler(tls, peer, conn_stop).await;
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                });
            }
        })
    }

    /// Stops accepting, tells every connection to finish, and waits up to
    /// `grace` for them.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop_tx.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        while self.active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
