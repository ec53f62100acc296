//! Watch liveness: a client layer that notes the time of every response and every body frame its
//! client receives, so the watchdog can tell a quiet watch (bookmarks still arrive) from a dead
//! one (nothing at all).
//!
//! kube-runtime's watcher consumes bookmarks itself and yields nothing for them; without this
//! layer a watch on a namespace where nothing happens would look dead. Each cache gets its own
//! client with its own [`Liveness`], so one watch's traffic never vouches for another's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};

/// When a client last received something.
#[derive(Debug)]
pub struct Liveness {
    epoch: Instant,
    /// Milliseconds since `epoch`.
    last_ms: AtomicU64,
}

impl Liveness {
    pub fn new() -> Arc<Liveness> {
        Arc::new(Liveness {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    pub fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last touch.
    pub fn quiet_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The layer, for `kube::client::ClientBuilder::with_layer`.
pub struct LivenessLayer(pub Arc<Liveness>);

impl<S> tower_layer::Layer<S> for LivenessLayer {
    type Service = LivenessService<S>;
    fn layer(&self, inner: S) -> LivenessService<S> {
        LivenessService {
            inner,
            liveness: self.0.clone(),
        }
    }
}

pub struct LivenessService<S> {
    inner: S,
    liveness: Arc<Liveness>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, Req, B> tower_service::Service<Request<Req>> for LivenessService<S>
where
    S: tower_service::Service<Request<Req>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: 'static,
{
    type Response = Response<Touching<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let liveness = self.liveness.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            liveness.touch();
            Ok(response.map(|inner| Touching { inner, liveness }))
        })
    }
}

/// A response body that touches its [`Liveness`] on every frame.
pub struct Touching<B> {
    inner: B,
    liveness: Arc<Liveness>,
}

impl<B: Body + Unpin> Body for Touching<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.liveness.touch();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
