//! Header rules and primitives, one concern per module. Nothing here knows the request path:
//! every layer (server, upstream client, auth, admin API) may use them.

pub mod forwarded;
pub mod hop_by_hop;
pub mod lines;
pub mod location;
pub mod raw;
pub mod request_lines;
pub mod secret;
