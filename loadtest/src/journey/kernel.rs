//! A kernel's WebSocket (`/user/{name}/api/kernels/{id}/channels`) and the part of the Jupyter
//! messaging protocol (v5.3) an execute loop needs. Without a subprotocol jupyter_server speaks
//! JSON text frames, each a whole message with `header`, `parent_header`, `metadata`, `content`
//! and `channel`.
//!
//! One execute is done when the shell channel's `execute_reply` for it has arrived *and* iopub
//! has reported the kernel `idle` for it: iopub and shell are separate streams, so outputs may
//! arrive after the reply, but never after `idle`. The output (an `execute_result`'s
//! `text/plain`, or `stream` text) is then compared with the expected text.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::client::Hub;
use super::dates::iso8601_now;
use super::phase::Failure;
use crate::error_kind::ErrorKind;
use crate::tls::Stream;

/// A kernel's messages are small; bounded buffers keep many users cheap.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 20))
}

/// What one execute produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExecuteOutcome {
    /// `execute_reply` content status (`ok`, `error`, `aborted`).
    pub reply_status: Option<String>,
    pub idle: bool,
    /// `text/plain` of the `execute_result`, if any.
    pub result: Option<String>,
    /// stdout/stderr text of `stream` messages, concatenated.
    pub stream: String,
    /// `ename: evalue` of an `error` message.
    pub error: Option<String>,
}

impl ExecuteOutcome {
    pub fn is_complete(&self) -> bool {
        self.reply_status.is_some() && self.idle
    }

    /// Folds in one message; messages for other requests are ignored.
    pub fn absorb(&mut self, msg: &Value, msg_id: &str) {
        if msg["parent_header"]["msg_id"].as_str() != Some(msg_id) {
            return;
        }
        let content = &msg["content"];
        match msg["header"]["msg_type"].as_str().or(msg["msg_type"].as_str()) {
            Some("execute_reply") => {
                self.reply_status = Some(content["status"].as_str().unwrap_or("missing").to_owned());
            }
            Some("status") if content["execution_state"] == "idle" => self.idle = true,
            Some("execute_result") => {
                self.result = content["data"]["text/plain"].as_str().map(str::to_owned);
            }
            Some("stream") => self.stream.push_str(content["text"].as_str().unwrap_or("")),
            Some("error") => {
                self.error = Some(format!(
                    "{}: {}",
                    content["ename"].as_str().unwrap_or("?"),
                    content["evalue"].as_str().unwrap_or("")
                ));
            }
            _ => {}
        }
    }

    /// Whether the execute succeeded with `expect` (when given) as its result or output.
    pub fn check(&self, expect: Option<&str>) -> Result<(), Failure> {
        if self.error.is_some() || self.reply_status.as_deref() != Some("ok") {
            return Err(Failure::KernelError);
        }
        match expect {
            None => Ok(()),
            Some(want) => {
                let got_result = self.result.as_deref().map(str::trim) == Some(want);
                let got_stream = self.stream.trim() == want;
                if got_result || got_stream {
                    Ok(())
                } else {
                    Err(Failure::WrongOutput)
                }
            }
        }
    }
}

/// An `execute_request` on the shell channel.
pub fn execute_request(msg_id: &str, session: &str, username: &str, code: &str) -> Value {
    json!({
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": username,
            "session": session,
            "date": iso8601_now(),
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": false,
            "store_history": true,
            "user_expressions": {},
            "allow_stdin": false,
            "stop_on_error": true,
        },
        "buffers": [],
        "channel": "shell",
    })
}

pub struct KernelSocket {
    ws: WebSocketStream<Stream>,
    session: String,
    username: String,
    sent: u64,
}

impl KernelSocket {
    /// Opens the channels WebSocket at `url` (`ws://…` or `wss://…` on `hub`) with the given
    /// headers.
    pub async fn connect(
        hub: &Hub,
        url: &str,
        headers: Vec<(http::header::HeaderName, String)>,
        session: String,
        username: String,
    ) -> Result<KernelSocket, Failure> {
        let mut req = url.into_client_request().map_err(|_| Failure::BadResponse)?;
        for (k, v) in headers {
            let v = http::HeaderValue::from_str(&v).map_err(|_| Failure::BadResponse)?;
            req.headers_mut().insert(k, v);
        }
        let stream = hub.connect().await.map_err(Failure::Http)?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config()))
            .await
            .map_err(ws_failure)?;
        Ok(KernelSocket {
            ws,
            session,
            username,
            sent: 0,
        })
    }

    /// Runs `code` and waits (at most `timeout`) until the reply and iopub idle have arrived.
    pub async fn execute(&mut self, code: &str, timeout: Duration) -> Result<ExecuteOutcome, Failure> {
        self.sent += 1;
        let msg_id = format!("{}-{}", self.session, self.sent);
        let msg = execute_request(&msg_id, &self.session, &self.username, code);
        let run = async {
            self.ws
                .send(Message::text(msg.to_string()))
                .await
                .map_err(|_| Failure::WsClosed)?;
            let mut outcome = ExecuteOutcome::default();
            while !outcome.is_complete() {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(v) = serde_json::from_str::<Value>(text.as_str()) {
                            outcome.absorb(&v, &msg_id);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(Failure::WsClosed),
                    Some(Ok(_)) => {}
                }
            }
            Ok(outcome)
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| Failure::Http(ErrorKind::Timeout))?
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

fn ws_failure(e: tokio_tungstenite::tungstenite::Error) -> Failure {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(resp) => Failure::from_status(resp.status().as_u16()),
        Error::Io(io) => Failure::Http(ErrorKind::from_connect(&io)),
        Error::ConnectionClosed | Error::AlreadyClosed => Failure::WsClosed,
        _ => Failure::Http(ErrorKind::Protocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(msg_type: &str, parent: &str, content: Value) -> Value {
        json!({"header": {"msg_type": msg_type}, "parent_header": {"msg_id": parent}, "content": content})
    }

    #[test]
    fn an_execute_completes_on_reply_and_idle_in_either_order() {
        let mut o = ExecuteOutcome::default();
        o.absorb(&msg("status", "m1", json!({"execution_state": "busy"})), "m1");
        o.absorb(&msg("execute_reply", "m1", json!({"status": "ok"})), "m1");
        assert!(!o.is_complete(), "iopub may still carry output");
        o.absorb(
            &msg("execute_result", "other", json!({"data": {"text/plain": "3"}})),
            "m1",
        );
        o.absorb(&msg("execute_result", "m1", json!({"data": {"text/plain": "2"}})), "m1");
        o.absorb(&msg("status", "m1", json!({"execution_state": "idle"})), "m1");
        assert!(o.is_complete());
        assert_eq!(o.check(Some("2")), Ok(()));
        assert_eq!(o.check(Some("3")), Err(Failure::WrongOutput));
        assert_eq!(o.check(None), Ok(()));
    }

    #[test]
    fn errors_and_streams_are_checked() {
        let mut o = ExecuteOutcome::default();
        o.absorb(&msg("stream", "m", json!({"name": "stdout", "text": "42\n"})), "m");
        o.absorb(&msg("execute_reply", "m", json!({"status": "ok"})), "m");
        assert_eq!(o.check(Some("42")), Ok(()));
        let mut o = ExecuteOutcome::default();
        o.absorb(&msg("error", "m", json!({"ename": "NameError", "evalue": "x"})), "m");
        o.absorb(&msg("execute_reply", "m", json!({"status": "error"})), "m");
        assert_eq!(o.check(None), Err(Failure::KernelError));
        assert_eq!(o.error.as_deref(), Some("NameError: x"));
    }

    #[test]
    fn requests_follow_the_v5_3_shape() {
        let m = execute_request("s-1", "s", "alice", "1+1");
        assert_eq!(m["header"]["msg_type"], "execute_request");
        assert_eq!(m["header"]["version"], "5.3");
        assert_eq!(m["channel"], "shell");
        assert_eq!(m["content"]["code"], "1+1");
        assert!(m["header"]["date"].as_str().unwrap().ends_with('Z'));
    }
}
