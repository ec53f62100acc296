//! The built-in single-user server (`edgehub singleuser`): a page and a WebSocket echo under the
//! server's prefix, so `edgehub up` works on a machine with no Python packages. (To be written.)
pub struct BuiltinArgs { pub port: u16, pub ip: String }
pub async fn run(_a: BuiltinArgs) -> anyhow::Result<()> { todo!() }
