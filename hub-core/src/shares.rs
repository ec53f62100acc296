//! Servers shared with other users and with groups (JupyterHub 5's sharing), as the hub and the
//! edge see them: who may reach a server besides its owner, written into the server's route
//! (`users`, `groups`) so the edge admits them, and into the scopes a grantee's token reports
//! (`access:servers!server=owner/name`) so a notebook server lets them in.
//!
//! Shares live in the state database; the route of a running server is written again whenever
//! its shares change, so a revoked share is refused at the edge as soon as the proxy has the new
//! route (within a second).

use serde_json::{Map, Value};

use crate::hub::Hub;
use crate::lifecycle::route_data;
use crate::model::Phase;
use crate::proxy_api::ProxyApiError;
use crate::store::{Grantee, ShareRecord, StoreError};

/// The scope a share grants by default, and the only one edgehub grants: using the server.
pub fn access_scope(owner: &str, server: &str) -> String {
    format!("access:servers!server={owner}/{server}")
}

/// The scopes a share may grant: those JupyterHub filters by server. A project server shared
/// with a group with `servers` as well as `access:servers` can be started and stopped by any
/// member, as well as used.
const SHAREABLE: &[&str] = &[
    "access:servers",
    "servers",
    "read:servers",
    "start:servers",
    "delete:servers",
];

/// The scopes a grant asks for, each filtered to `owner/server` (JupyterHub applies the filter
/// to an unfiltered scope; a filter naming another server is refused). `None`: the default,
/// `access:servers` alone. `Err` says why a scope cannot be shared.
pub fn server_scopes(asked: Option<&[String]>, owner: &str, server: &str) -> Result<Vec<String>, String> {
    let Some(asked) = asked.filter(|a| !a.is_empty()) else {
        return Ok(vec![access_scope(owner, server)]);
    };
    let mut scopes = Vec::new();
    for text in asked {
        let scope = crate::scopes::parse(text).map_err(|e| e.to_string())?;
        if !SHAREABLE.contains(&scope.name) {
            return Err(format!(
                "{text:?} cannot be shared: shares grant {} on one server",
                SHAREABLE.join(", ")
            ));
        }
        match &scope.filter {
            crate::scopes::Filter::All => {}
            crate::scopes::Filter::Server { user, server: name } if user == owner && name == server => {}
            _ => return Err(format!("{text:?} is not about the server {owner}/{server}")),
        }
        let filtered = format!("{}!server={owner}/{server}", scope.name);
        if !scopes.contains(&filtered) {
            scopes.push(filtered);
        }
    }
    Ok(scopes)
}

/// The shares granted to `user`, directly or through one of their groups, oldest first.
pub fn with_user(hub: &Hub, user: &str) -> Result<Vec<ShareRecord>, StoreError> {
    let groups = hub.store.user_groups(user)?;
    Ok(hub
        .store
        .shares()?
        .into_iter()
        .filter(|s| match &s.grantee {
            Grantee::User(name) => name == user,
            Grantee::Group(name) => groups.contains(name),
        })
        .collect())
}

/// The scopes the shares give `user`, directly or through one of their groups.
pub fn granted_to(hub: &Hub, user: &str) -> Result<crate::scopes::Scopes, StoreError> {
    let texts: Vec<String> = with_user(hub, user)?.into_iter().flat_map(|s| s.scopes).collect();
    // Unreadable scopes in a share grant nothing.
    Ok(crate::scopes::Scopes::requested(&texts, user)
        .ok()
        .flatten()
        .unwrap_or_default())
}

/// Whom the shares in `shares` let into `owner`'s `server`.
pub fn grantees<'a>(shares: &'a [ShareRecord], owner: &str, server: &str) -> Vec<&'a Grantee> {
    shares
        .iter()
        .filter(|s| s.owner == owner && s.server == server)
        .map(|s| &s.grantee)
        .collect()
}

/// A server's route data with its shares as they are in the database now. If they cannot be
/// read, the route names its owner only: a share may be missing for a moment, never one that
/// was revoked.
pub fn route_data_now(hub: &Hub, owner: &str, server: &str) -> Map<String, Value> {
    let shares = hub.store.shares().unwrap_or_else(|e| {
        tracing::warn!("the shares of {owner}/{server} cannot be read; its route names its owner only: {e}");
        Vec::new()
    });
    route_data_with(hub, &shares, owner, server)
}

/// A server's route data: its owner, whom `shares` (every share, read once by the caller) let
/// in, and whom the configured roles let in (`access:servers` reaching it; a `!group=` filter
/// counts the owner's groups of now, and none if they cannot be read: fail closed).
pub fn route_data_with(hub: &Hub, shares: &[ShareRecord], owner: &str, server: &str) -> Map<String, Value> {
    let from_roles = if hub.roles.is_empty() {
        Vec::new()
    } else {
        hub.roles.server_grantees(owner, server, &|user| {
            hub.store.user_groups(user).unwrap_or_else(|e| {
                tracing::warn!(
                    "the groups of {user} cannot be read; roles for their groups let no one into {owner}/{server}: {e}"
                );
                Vec::new()
            })
        })
    };
    let mut all = grantees(shares, owner, server);
    for grantee in &from_roles {
        if !all.contains(&grantee) {
            all.push(grantee);
        }
    }
    route_data(owner, server, &all)
}

/// Writes a running server's route again after its shares changed. A server that is not
/// running has no route; its shares are in its route when it starts.
pub async fn refresh_route(hub: &Hub, owner: &str, server: &str) -> Result<(), ProxyApiError> {
    let url = hub
        .server(owner, server)
        .filter(|s| s.phase() == Phase::Running)
        .and_then(|s| s.record.url);
    let Some(url) = url else {
        return Ok(());
    };
    let data = route_data_now(hub, owner, server);
    hub.proxy.add_route(&hub.prefix(owner, server), &url, data).await
}

/// The servers shared with `user`, directly or through one of their groups, as
/// `(owner, server)`.
pub fn shared_with(hub: &Hub, user: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut servers: Vec<(String, String)> = with_user(hub, user)?.into_iter().map(|s| (s.owner, s.server)).collect();
    servers.sort();
    servers.dedup();
    Ok(servers)
}
