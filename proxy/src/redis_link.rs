//! One multiplexed Redis connection kept open in the background, shared by the stores that talk
//! to Redis (edge-auth sessions, the route store): whoever finds it broken reports it, and it is
//! replaced with backoff. A call that comes before the first connection attempt has ended, or
//! just after a broken connection was reported, waits for the attempt under way (at most its own
//! limit) rather than be answered as if Redis were down; while Redis is known to be down, calls
//! are answered at once.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

pub struct RedisLink {
    /// What the connection is for, in log lines (`session store`, `route store`).
    role: &'static str,
    /// The URL as logged: without its password.
    url: String,
    client: redis::Client,
    response_timeout: Duration,
    /// The connection and whether one is being made; the keeper reconnects when a user
    /// clears `conn`.
    state: watch::Sender<LinkState>,
}

#[derive(Clone)]
struct LinkState {
    conn: Option<Arc<MultiplexedConnection>>,
    /// A connection attempt is under way whose outcome callers should wait for: the first one,
    /// or the one after a user found the connection broken (Redis restarted: the next attempt
    /// will most likely succeed). False while Redis is known to be down.
    settling: bool,
}

impl RedisLink {
    /// Opens nothing yet: [`RedisLink::keep_connected`] does, so a Redis that is down at start-up
    /// delays nothing but the first calls.
    pub fn new(role: &'static str, url: &str, response_timeout: Duration) -> Result<Arc<RedisLink>, redis::RedisError> {
        Ok(Arc::new(RedisLink {
            role,
            url: without_password(url),
            client: redis::Client::open(url)?,
            response_timeout,
            state: watch::Sender::new(LinkState {
                conn: None,
                settling: true,
            }),
        }))
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The URL, for messages: a password in it is replaced by `***`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection, if there is one. While an attempt that callers should wait for is under
    /// way (the first, or a reconnect after a failure), waits for it, at most `limit`; while
    /// Redis is known to be down, answers `None` at once.
    pub async fn connection(&self, limit: Duration) -> Option<MultiplexedConnection> {
        let mut state = self.state.subscribe();
        let settled = state.wait_for(|s| s.conn.is_some() || !s.settling);
        match tokio::time::timeout(limit, settled).await {
            Ok(Ok(s)) => s.conn.as_deref().cloned(),
            _ => None,
        }
    }

    /// A call failed on the connection: drop it and connect again.
    pub fn report_broken(&self) {
        self.state.send_if_modified(|s| {
            let had = s.conn.take().is_some();
            if had {
                s.settling = true;
            }
            had
        });
    }

    /// Holds one connection; replaces it when a user reports it broken. Runs forever.
    pub async fn keep_connected(self: Arc<Self>) {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(self.response_timeout));
        let mut backoff = Duration::from_millis(100);
        let mut reported_down = false;
        loop {
            match self.client.get_multiplexed_async_connection_with_config(&config).await {
                Ok(conn) => {
                    tracing::info!("{} connected: {}", self.role, self.url);
                    self.state.send_replace(LinkState {
                        conn: Some(Arc::new(conn)),
                        settling: false,
                    });
                    backoff = Duration::from_millis(100);
                    reported_down = false;
                    let mut state = self.state.subscribe();
                    let _ = state.wait_for(|s| s.conn.is_none()).await;
                }
                Err(e) => {
                    // Once per outage at WARN; the retries every few seconds at DEBUG.
                    if reported_down {
                        tracing::debug!("{} {} unreachable: {e}", self.role, self.url);
                    } else {
                        tracing::warn!("{} {} unreachable: {e}", self.role, self.url);
                        reported_down = true;
                    }
                    self.state.send_replace(LinkState {
                        conn: None,
                        settling: false,
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Whether `e` says the connection itself failed (rather than Redis refusing a command): the
/// caller then reports the link broken so it is replaced.
pub fn lost_connection(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

/// `redis://user:secret@host/0` → `redis://user:***@host/0`: URLs go into logs and API answers.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_kept_out_of_messages() {
        let cases = [
            ("redis://:s3cret@redis:6379/1", "redis://:***@redis:6379/1"),
            ("rediss://app:s3cret@redis/0", "rediss://app:***@redis/0"),
            ("redis://redis:6379/1", "redis://redis:6379/1"),
            ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ];
        for (url, shown) in cases {
            assert_eq!(super::without_password(url), shown);
        }
    }
}
