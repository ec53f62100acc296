//! The client's side of a protocol upgrade, between the layer that owns the connection (the
//! HTTP/1 server) and the layers that decide on and run the upgrade (the pipeline and the
//! WebSocket tunnel). None of them names another: they meet here.
//!
//! The server puts a [`PendingUpgrade`] in the request's extensions and keeps the [`Sender`];
//! once it has written a `101`, it hands the connection over, with whatever the client sent
//! behind its head.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::client_io::ClientIo;
use crate::http1::Rewind;

/// A client connection taken over after a `101`.
pub type Upgraded = Rewind<ClientIo>;

/// The connection, once the `101` has gone out. Cloneable because request extensions must be.
#[derive(Clone)]
pub struct PendingUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

/// The server's half: sends the connection to the [`PendingUpgrade`].
pub struct Sender(oneshot::Sender<Upgraded>);

/// A connected pair: the server keeps the [`Sender`], the request carries the other half.
pub fn pending() -> (Sender, PendingUpgrade) {
    let (tx, rx) = oneshot::channel();
    (Sender(tx), PendingUpgrade(Arc::new(Mutex::new(Some(rx)))))
}

impl Sender {
    /// Hands the connection over; dropped when nobody waits for it any more.
    pub fn complete(self, conn: Upgraded) {
        let _ = self.0.send(conn);
    }
}

impl PendingUpgrade {
    /// The connection, when the `101` has gone out (`None`: the exchange ended otherwise).
    pub async fn connection(&self) -> Option<Upgraded> {
        let rx = self.0.lock().ok()?.take()?;
        rx.await.ok()
    }
}
