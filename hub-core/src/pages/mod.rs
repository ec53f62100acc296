//! Server-rendered pages: login, home, spawn pending, not running, errors. (To be written.)

/// What every page needs to know about the request.
#[derive(Debug, Clone, Default)]
pub struct PageContext {
    /// The hub's base prefix, `/` or `/jhub/`; every link is built on it.
    pub base: String,
    /// The logged-in user, if any.
    pub user: Option<String>,
    pub admin: bool,
    /// Value for the `_xsrf` form field and the `X-XSRFToken` header of API calls from pages.
    pub xsrf: String,
}

/// The state of one server as the home page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerPhase {
    Stopped,
    Pending,
    Running,
    Stopping,
}

#[derive(Debug, Clone)]
pub struct ServerView {
    /// `""` for the default server.
    pub name: String,
    pub phase: ServerPhase,
    /// Where the server is reached, e.g. `/user/alice/` or `/user/alice/lab2/`.
    pub url: String,
    /// The progress event stream, e.g. `/hub/api/users/alice/server/progress`.
    pub progress_url: String,
    /// RFC 3339, if known.
    pub last_activity: Option<String>,
}
// TEMP stubs
pub struct LoginOptions { pub error: Option<String>, pub next: Option<String>, pub username: Option<String>, pub ask_password: bool, pub hint: Option<String> }
#[derive(Clone, Copy)]
pub struct NamedServers { pub allowed: bool, pub limit: u32 }
pub const STYLESHEET: &str = "";
pub const SCRIPT: &str = "";
pub fn login(_c: &PageContext, _o: &LoginOptions) -> String { todo!() }
pub fn home(_c: &PageContext, _s: &[ServerView], _n: NamedServers) -> String { todo!() }
pub fn spawn_pending(_c: &PageContext, _u: &str, _s: &str, _p: &str, _url: &str) -> String { todo!() }
pub fn not_running(_c: &PageContext, _u: &str, _s: &str, _url: &str) -> String { todo!() }
pub fn error(_c: &PageContext, _code: u16, _m: &str) -> String { todo!() }
