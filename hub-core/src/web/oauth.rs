//! The OAuth2 authorization-code flow by which `jupyterhub-singleuser` logs a browser into its
//! server (JupyterHub's `/hub/api/oauth2/authorize` and `/token`), so stock notebook servers run
//! unchanged behind edgehub.
//!
//! Each server is a client whose id (`JUPYTERHUB_CLIENT_ID`), callback
//! (`JUPYTERHUB_OAUTH_CALLBACK_URL`) and secret (its `JUPYTERHUB_API_TOKEN`) the hub gave it at
//! spawn, so nothing needs registering: a client id names its server. A configured service with a
//! `url` is a client too (`service-{name}`, its callback under `services/{name}/`, its token as
//! the secret), so services written with JupyterHub's `HubOAuth` sign users in unchanged. Codes
//! are single-use and live 60 s; the access token issued is a user token that expires with the
//! login session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::hub::Hub;
use crate::model::Phase;
use crate::store::{OAuthCode, StateStore, StoreError};
use crate::tokens::TokenRecordOrAdmin;
use crate::web::caller::Authenticated;
use crate::web::{Body, Req, json, json_error, redirect};

const CODE_LIFETIME: Duration = Duration::from_secs(60);

/// Codes handed out and not yet exchanged: here, or in the state database when several hub
/// replicas share it (the server's exchange may reach another replica than the browser did).
#[derive(Default)]
pub struct Codes {
    grants: Mutex<HashMap<String, OAuthCode>>,
}

impl Codes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OAuthCode>> {
        self.grants.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, store: &dyn StateStore, code: &str, grant: OAuthCode) -> Result<(), StoreError> {
        if store.shared() {
            return store.put_code(code, &grant);
        }
        let now = proxy::timestamp::now_ms();
        let mut grants = self.lock();
        grants.retain(|_, g| g.expires_ms > now);
        grants.insert(code.to_owned(), grant);
        Ok(())
    }

    /// The grant of `code`, which is used up (whether it then matches or not).
    fn take(&self, store: &dyn StateStore, code: &str) -> Result<Option<OAuthCode>, StoreError> {
        if store.shared() {
            return store.take_code(code);
        }
        Ok(self.lock().remove(code))
    }
}

/// The client id the hub gives a server (`JUPYTERHUB_CLIENT_ID`).
pub fn client_id(user: &str, server: &str) -> String {
    use crate::model::escape_segment;
    if server.is_empty() {
        format!("jupyterhub-user-{}", escape_segment(user))
    } else {
        format!("jupyterhub-user-{}-{}", escape_segment(user), escape_segment(server))
    }
}

/// The client id of a service (`JUPYTERHUB_CLIENT_ID`, JupyterHub's default for services).
pub fn service_client_id(name: &str) -> String {
    format!("service-{name}")
}

/// Who asks for codes.
enum Client {
    /// An active server: `user`'s `server`.
    Server { user: String, server: String },
    /// A service with a web page of its own.
    Service(Arc<crate::services::Service>),
}

fn client(hub: &Hub, id: &str) -> Option<Client> {
    if let Some(service) = id
        .strip_prefix("service-")
        .and_then(|name| hub.services.get(name))
        .filter(|s| s.config.url.is_some())
    {
        return Some(Client::Service(service.clone()));
    }
    hub.users().values().find_map(|u| {
        u.servers
            .values()
            .filter(|s| s.phase() != Phase::Stopped)
            .find(|s| client_id(&s.record.user, &s.record.name) == id)
            .map(|s| Client::Server {
                user: s.record.user.clone(),
                server: s.record.name.clone(),
            })
    })
}

impl Client {
    /// The one callback the client's codes may be sent to.
    fn callback(&self, hub: &Hub) -> String {
        match self {
            Client::Server { user, server } => format!("{}oauth_callback", hub.prefix(user, server)),
            Client::Service(s) => s.oauth_callback(&hub.base),
        }
    }

    /// Why `who` may not sign in to it, if they may not.
    fn refuses(&self, hub: &Hub, who: &crate::tokens::Caller) -> Option<String> {
        match self {
            // Its owner, an admin, and whoever a share or a role gives access to it.
            Client::Server { user, server } => {
                let target = crate::scopes::Target::server(user, server);
                (!crate::web::caller::allowed(hub, who, "access:servers", target))
                    .then(|| format!("{} may not use {user}'s server", who.name))
            }
            Client::Service(s) if !s.usable_by(who, || hub.store.user_groups(&who.name).unwrap_or_default()) => {
                Some(format!("{} may not use the service {}", who.name, s.config.name))
            }
            Client::Service(_) => None,
        }
    }

    /// Whether `secret` is the client's own token.
    fn secret_is(&self, hub: &Hub, secret: &str) -> bool {
        match (self, hub.lookup_token(secret)) {
            (Client::Server { user, server }, Some(TokenRecordOrAdmin::Record(r))) => {
                r.user == *user && r.server.as_deref() == Some(server.as_str())
            }
            (Client::Service(s), Some(TokenRecordOrAdmin::Service(name))) => name == s.config.name,
            _ => false,
        }
    }
}

/// `GET /hub/api/oauth2/authorize`: a logged-in user who may use the server is sent back to its
/// callback with a code.
pub fn authorize(hub: &Hub, req: &Req, auth: &Authenticated) -> http::Response<Body> {
    let (Some(id), Some(redirect_uri)) = (req.query_param("client_id"), req.query_param("redirect_uri")) else {
        return json_error(StatusCode::BAD_REQUEST, "client_id and redirect_uri are required");
    };
    if req.query_param("response_type").as_deref().is_some_and(|t| t != "code") {
        return json_error(StatusCode::BAD_REQUEST, "only response_type=code is supported");
    }
    let Some(client) = client(hub, &id) else {
        return json_error(StatusCode::BAD_REQUEST, &format!("No such client: {id}"));
    };
    // The callback must be the client's own, or a code could be sent anywhere.
    if redirect_uri != client.callback(hub) {
        return json_error(StatusCode::BAD_REQUEST, "redirect_uri does not match the client's");
    }
    if let Some(why) = client.refuses(hub, &auth.caller) {
        return json_error(StatusCode::FORBIDDEN, &why);
    }
    let code = crate::tokens::generate();
    let grant = OAuthCode {
        user: auth.caller.name.clone(),
        client_id: id,
        redirect_uri: redirect_uri.clone(),
        expires_ms: proxy::timestamp::now_ms() + CODE_LIFETIME.as_millis() as u64,
    };
    if let Err(e) = hub.oauth.put(hub.store.as_ref(), &code, grant) {
        tracing::error!("recording an OAuth code: {e}");
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "cannot record the login");
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("code", &code);
    if let Some(state) = req.query_param("state") {
        query.append_pair("state", &state);
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    redirect(&format!("{redirect_uri}{sep}{}", query.finish()))
}

/// `POST /hub/api/oauth2/token`: the server trades a code, with its secret, for a token.
pub fn token(hub: &Arc<Hub>, req: &Req) -> http::Response<Body> {
    let form: HashMap<String, String> = req.form().into_iter().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if field("grant_type") != "authorization_code" {
        return json_error(StatusCode::BAD_REQUEST, "grant_type must be authorization_code");
    }
    let grant = match hub.oauth.take(hub.store.as_ref(), field("code")) {
        Ok(Some(grant)) => grant,
        Ok(None) => return json_error(StatusCode::BAD_REQUEST, "invalid or used code"),
        Err(e) => {
            tracing::error!("checking an OAuth code: {e}");
            return json_error(StatusCode::SERVICE_UNAVAILABLE, "cannot check the code");
        }
    };
    if grant.expires_ms <= proxy::timestamp::now_ms()
        || grant.client_id != field("client_id")
        || grant.redirect_uri != field("redirect_uri")
    {
        return json_error(StatusCode::BAD_REQUEST, "the code does not match this client");
    }
    // The client secret is the server's, or the service's, own API token.
    let Some(client) = client(hub, &grant.client_id) else {
        return json_error(StatusCode::BAD_REQUEST, "the client's server is gone");
    };
    if !client.secret_is(hub, field("client_secret")) {
        return json_error(StatusCode::FORBIDDEN, "bad client_secret");
    }
    let lifetime = hub.config.session.lifetime_secs;
    // A server gets a token of its own user's. Another user's server, and a service, get only
    // what tells them who signed in and that they may use it (JupyterHub's `identify` and the
    // access scope, named exactly as the server or service checks it), never the user's rights.
    let identify = |access: String| {
        Some(vec![
            access,
            format!("read:users:name!user={}", grant.user),
            format!("read:users:groups!user={}", grant.user),
        ])
    };
    let scopes = match &client {
        Client::Server { user, .. } if *user == grant.user => None,
        Client::Server { user, server } => identify(crate::shares::access_scope(user, server)),
        Client::Service(s) => identify(s.access_scope()),
    };
    match hub.issue_token(
        &grant.user,
        None,
        &format!("oauth: {}", grant.client_id),
        Some(lifetime),
        scopes,
    ) {
        Ok((token, _)) => {
            let mut r = json(
                StatusCode::OK,
                &json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": "identify"}),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => crate::web::input::internal_error("issuing an OAuth token", e),
    }
}
