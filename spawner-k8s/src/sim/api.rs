//! The HTTP face of the simulator: URL → (verb, resource, namespace, name, subresource), the
//! request counted and checked against injected faults, then served from the registry and store.
//!
//! The request path never panics: a malformed URL, query or body is a 4xx `Status`.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::api_error::ApiError;
use super::faults::Faults;
use super::object;
use super::paths;
use super::registry::{DeleteOptions, PatchType, Registry};
use super::resources::{self, ResourceType};
use super::selector::{FieldSelector, LabelSelector};
use super::stats::{StatsRecorder, Verb};
use super::watch::{self as watch_stream, WatchContext, WatchRequest};

/// The largest request body accepted (the API server's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// A response body: whole, or a watch stream fed by a channel.
pub enum SimBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SimBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Stream(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            SimBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// Everything a request handler reads.
pub struct ApiServer {
    pub registry: Arc<Registry>,
    pub faults: Arc<Faults>,
    pub stats: Arc<StatsRecorder>,
    pub bookmark_interval: Duration,
    pub root_dir: PathBuf,
    pub shutdown: watch::Receiver<bool>,
}

/// A request's target after URL parsing.
struct Target {
    resource: &'static ResourceType,
    /// `None`: all namespaces (lists and watches of namespaced resources only).
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl ApiServer {
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Result<Response<SimBody>, Infallible> {
        let path = request.uri().path().to_string();
        let query = parse_query(request.uri().query().unwrap_or_default());
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let response = match segments.as_slice() {
            ["version"] => json_response(StatusCode::OK, &version()),
            ["api"] => json_response(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            ),
            ["apis"] => json_response(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
            ),
            ["api", "v1"] => json_response(StatusCode::OK, &resource_list()),
            ["healthz" | "livez" | "readyz"] => text_response(StatusCode::OK, "ok".into()),
            ["sim", "stats"] => json_response(StatusCode::OK, &self.stats.snapshot().to_json()),
            ["api", "v1", rest @ ..] => match parse_target(rest) {
                Ok(target) => self.serve(request, target, &query).await,
                Err(e) => error_response(&e),
            },
            _ => error_response(&ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            )),
        };
        Ok(response)
    }

    async fn serve(&self, request: Request<Incoming>, target: Target, query: &[(String, String)]) -> Response<SimBody> {
        let verb = match verb_of(request.method(), &target, query) {
            Ok(verb) => verb,
            Err(e) => return error_response(&e),
        };
        let resource_key = match &target.subresource {
            Some(sub) => format!("{}/{sub}", target.resource.plural),
            None => target.resource.plural.to_string(),
        };
        self.stats.record(verb, &resource_key);
        if let Some(fault) = self.faults.take(verb, &resource_key) {
            return error_response(&fault);
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let body = match read_body(request.into_body()).await {
            Ok(body) => body,
            Err(e) => return error_response(&e),
        };
        let result = match verb {
            Verb::Watch => return self.watch(target, query),
            Verb::List => self.list(&target, query),
            Verb::Get if target.subresource.as_deref() == Some("log") => return self.log(&target, query),
            Verb::Get => self.get(&target).map(|o| (StatusCode::OK, o)),
            Verb::Create => self.create(&target, &body),
            Verb::Update => self.replace(&target, &body),
            Verb::Patch => self.patch(&target, &body, &content_type),
            Verb::Delete => self.delete(&target, &body, query),
            Verb::DeleteCollection => self.delete_collection(&target, &body, query),
        };
        match result {
            Ok((status, value)) => json_response(status, &*value),
            Err(e) => error_response(&e),
        }
    }

    fn namespace(target: &Target) -> &str {
        target.namespace.as_deref().unwrap_or_default()
    }

    fn name(target: &Target) -> Result<&str, ApiError> {
        target
            .name
            .as_deref()
            .ok_or_else(|| ApiError::method_not_allowed("a name is required"))
    }

    fn get(&self, target: &Target) -> Result<Arc<Value>, ApiError> {
        let name = Self::name(target)?;
        self.registry
            .store
            .get(target.resource.plural, Self::namespace(target), name)
            .ok_or_else(|| ApiError::not_found(target.resource.plural, name))
    }

    fn list(&self, target: &Target, query: &[(String, String)]) -> Result<(StatusCode, Arc<Value>), ApiError> {
        let rt = target.resource;
        let (labels, fields) = selectors(rt, query)?;
        let limit = match param(query, "limit") {
            Some(l) => l
                .parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
            None => 0,
        };
        let (objects, mut version) = self.registry.store.list(rt.plural, target.namespace.as_deref());
        let mut after: Option<(String, String)> = None;
        if let Some(token) = param(query, "continue").filter(|t| !t.is_empty()) {
            let (v, key) = parse_continue(token)
                .ok_or_else(|| ApiError::bad_request(format!("invalid continue token {token:?}")))?;
            version = v;
            after = Some(key);
        }
        let mut items = Vec::new();
        let mut next = None;
        for object in objects
            .iter()
            .filter(|o| after.as_ref().is_none_or(|a| object::key(o) > *a))
        {
            if !(labels.matches(object) && fields.matches(object, |o, f| rt.field_value(o, f))) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                let last: &Value = items.last().copied().unwrap_or(object);
                let (ns, name) = object::key(last);
                next = Some(format!("{version}|{ns}|{name}"));
                break;
            }
            items.push(&**object);
        }
        let mut metadata = json!({"resourceVersion": version.to_string()});
        if let Some(token) = next {
            metadata["continue"] = json!(token);
        }
        #[derive(Serialize)]
        struct List<'a> {
            kind: String,
            #[serde(rename = "apiVersion")]
            api_version: &'static str,
            metadata: Value,
            items: Vec<&'a Value>,
        }
        let list = List {
            kind: format!("{}List", rt.kind),
            api_version: "v1",
            metadata,
            items,
        };
        let value = serde_json::to_value(&list).map_err(|e| ApiError::new(500, "InternalError", e.to_string()))?;
        Ok((StatusCode::OK, Arc::new(value)))
    }

    fn watch(&self, target: Target, query: &[(String, String)]) -> Response<SimBody> {
        let request = match self.watch_request(target, query) {
            Ok(r) => r,
            Err(e) => return error_response(&e),
        };
        let ctx = WatchContext {
            store: self.registry.store.clone(),
            faults: self.faults.clone(),
            bookmark_interval: self.bookmark_interval,
            shutdown: self.shutdown.clone(),
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(watch_stream::run(request, ctx, tx));
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(SimBody::Stream(rx))
            .unwrap_or_else(|_| Response::new(SimBody::Full(None)))
    }

    fn watch_request(&self, target: Target, query: &[(String, String)]) -> Result<WatchRequest, ApiError> {
        let (labels, fields) = selectors(target.resource, query)?;
        let since = match param(query, "resourceVersion").unwrap_or_default() {
            "" | "0" => None,
            v => Some(
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))?,
            ),
        };
        let timeout = match param(query, "timeoutSeconds") {
            Some(t) => Duration::from_secs(
                t.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
            ),
            None => Duration::from_secs(1800),
        };
        let mut fields = fields;
        if let Some(name) = target.name {
            // A watch on one object by name (`/pods/x?watch=true`, the old form) is a watch with
            // a name field selector.
            fields = FieldSelector::parse(&format!("metadata.name={name}"), |_| true).map_err(ApiError::bad_request)?;
        }
        Ok(WatchRequest {
            resource: target.resource,
            namespace: target.namespace,
            labels,
            fields,
            since,
            send_initial_events: flag(query, "sendInitialEvents"),
            bookmarks: flag(query, "allowWatchBookmarks"),
            timeout,
        })
    }

    fn create(&self, target: &Target, body: &[u8]) -> Result<(StatusCode, Arc<Value>), ApiError> {
        if target.resource.namespaced && target.namespace.is_none() {
            return Err(ApiError::method_not_allowed(format!(
                "create {} needs a namespace in the URL",
                target.resource.plural
            )));
        }
        let body = parse_json(body)?;
        let created = self.registry.create(target.resource, Self::namespace(target), body)?;
        Ok((StatusCode::CREATED, created))
    }

    fn replace(&self, target: &Target, body: &[u8]) -> Result<(StatusCode, Arc<Value>), ApiError> {
        let name = Self::name(target)?;
        let body = parse_json(body)?;
        let status_only = target.subresource.as_deref() == Some("status");
        let updated = self
            .registry
            .replace(target.resource, Self::namespace(target), name, body, status_only)?;
        Ok((StatusCode::OK, updated))
    }

    fn patch(&self, target: &Target, body: &[u8], content_type: &str) -> Result<(StatusCode, Arc<Value>), ApiError> {
        let name = Self::name(target)?;
        let patch_type =
            PatchType::from_content_type(content_type).ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
        let patch = parse_json(body)?;
        let status_only = target.subresource.as_deref() == Some("status");
        let existed = self
            .registry
            .store
            .get(target.resource.plural, Self::namespace(target), name)
            .is_some();
        let patched = self.registry.patch(
            target.resource,
            Self::namespace(target),
            name,
            patch_type,
            patch,
            status_only,
        )?;
        Ok((if existed { StatusCode::OK } else { StatusCode::CREATED }, patched))
    }

    fn delete(
        &self,
        target: &Target,
        body: &[u8],
        query: &[(String, String)],
    ) -> Result<(StatusCode, Arc<Value>), ApiError> {
        let name = Self::name(target)?;
        let options = delete_options(body, query)?;
        let deleted = self
            .registry
            .delete(target.resource, Self::namespace(target), name, &options)?;
        Ok((StatusCode::OK, deleted))
    }

    fn delete_collection(
        &self,
        target: &Target,
        body: &[u8],
        query: &[(String, String)],
    ) -> Result<(StatusCode, Arc<Value>), ApiError> {
        let rt = target.resource;
        let options = delete_options(body, query)?;
        let (labels, fields) = selectors(rt, query)?;
        let (objects, _) = self.registry.store.list(rt.plural, target.namespace.as_deref());
        let mut items = Vec::new();
        for object in objects
            .iter()
            .filter(|o| labels.matches(o) && fields.matches(o, |o, f| rt.field_value(o, f)))
        {
            let (ns, name) = object::key(object);
            if let Ok(deleted) = self.registry.delete(rt, &ns, &name, &options) {
                items.push((*deleted).clone());
            }
        }
        let version = self.registry.store.current_resource_version();
        let list = json!({"kind": format!("{}List", rt.kind), "apiVersion": "v1", "metadata": {"resourceVersion": version.to_string()}, "items": items});
        Ok((StatusCode::OK, Arc::new(list)))
    }

    /// `pods/<name>/log`: the container's stdout and stderr as the kubelet wrote them.
    fn log(&self, target: &Target, query: &[(String, String)]) -> Response<SimBody> {
        let pod = match self.get(target) {
            Ok(pod) => pod,
            Err(e) => return error_response(&e),
        };
        let container = param(query, "container")
            .map(str::to_string)
            .unwrap_or_else(|| object::str_at(&pod, "/spec/containers/0/name").to_string());
        let path = paths::log_file(&self.root_dir, object::namespace(&pod), object::name(&pod), &container);
        match std::fs::read(&path) {
            Ok(bytes) => text_response(StatusCode::OK, String::from_utf8_lossy(&bytes).into_owned()),
            Err(_) => error_response(&ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{}\" is waiting to start",
                object::name(&pod)
            ))),
        }
    }
}

/// `/api/v1/…` after the prefix → what the request is about.
fn parse_target(segments: &[&str]) -> Result<Target, ApiError> {
    let unknown = |what: &str| {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({what})"),
        )
    };
    let (resource, namespace, rest) = match segments {
        ["namespaces", ns, plural, rest @ ..] if *plural != "status" && *plural != "finalize" => {
            let rt = resources::by_plural(plural)
                .filter(|r| r.namespaced)
                .ok_or_else(|| unknown(plural))?;
            (rt, Some(ns.to_string()), rest)
        }
        [plural, rest @ ..] => (resources::by_plural(plural).ok_or_else(|| unknown(plural))?, None, rest),
        [] => return Err(unknown("")),
    };
    let (name, subresource) = match rest {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(unknown(&segments.join("/"))),
    };
    if resource.namespaced && namespace.is_none() && name.is_some() {
        return Err(unknown(&segments.join("/")));
    }
    match subresource.as_deref() {
        None => {}
        Some("status") if resource.has_status => {}
        Some("log") if resource.plural == "pods" => {}
        Some(other) => return Err(unknown(&format!("{}/{other}", resource.plural))),
    }
    Ok(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

fn verb_of(method: &Method, target: &Target, query: &[(String, String)]) -> Result<Verb, ApiError> {
    let named = target.name.is_some();
    let verb = match (method, named) {
        (&Method::GET, _) if flag(query, "watch") => Verb::Watch,
        (&Method::GET, false) => Verb::List,
        (&Method::GET, true) => Verb::Get,
        (&Method::POST, false) => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        (method, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "{method} is not allowed on this path"
            )));
        }
    };
    if target.subresource.as_deref() == Some("log") && verb != Verb::Get {
        return Err(ApiError::method_not_allowed("pods/log only answers GET"));
    }
    if target.subresource.as_deref() == Some("status") && !matches!(verb, Verb::Get | Verb::Update | Verb::Patch) {
        return Err(ApiError::method_not_allowed(
            "the status subresource answers get, update and patch",
        ));
    }
    Ok(verb)
}

fn selectors(rt: &ResourceType, query: &[(String, String)]) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(param(query, "labelSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(param(query, "fieldSelector").unwrap_or_default(), |f| rt.selectable(f))
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn delete_options(body: &[u8], query: &[(String, String)]) -> Result<DeleteOptions, ApiError> {
    let mut options = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        DeleteOptions::from_json(&parse_json(body)?)
    };
    if let Some(grace) = param(query, "gracePeriodSeconds") {
        options.grace_period_seconds = Some(
            grace
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {grace:?}")))?,
        );
    }
    if let Some(policy) = param(query, "propagationPolicy") {
        options.propagation_policy = Some(policy.to_string());
    }
    Ok(options)
}

fn parse_continue(token: &str) -> Option<(u64, (String, String))> {
    let mut parts = token.splitn(3, '|');
    let version = parts.next()?.parse().ok()?;
    Some((version, (parts.next()?.to_string(), parts.next()?.to_string())))
}

async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body could not be read: {e}"),
        )),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A boolean query parameter read as the API server reads it (apimachinery's
/// `Convert_Slice_string_To_bool`): absent, `0` or `false` in any case is false, anything else
/// (`true`, `True` as Python clients send it, even an empty value) is true.
fn flag(query: &[(String, String)], key: &str) -> bool {
    param(query, key).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// `application/x-www-form-urlencoded` query decoding (`+` is a space, `%XX` a byte).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-edgehub-sim", "gitCommit": "", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
        "emulationMajor": "1", "emulationMinor": "33", "minCompatibilityMajor": "1", "minCompatibilityMinor": "32"
    })
}

fn resource_list() -> Value {
    let mut list = Vec::new();
    for rt in resources::ALL {
        list.push(json!({
            "name": rt.plural, "singularName": rt.kind.to_lowercase(), "namespaced": rt.namespaced, "kind": rt.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": rt.short_names,
        }));
        if rt.has_status {
            list.push(json!({"name": format!("{}/status", rt.plural), "singularName": "", "namespaced": rt.namespaced, "kind": rt.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    list.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": list})
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Response<SimBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(SimBody::Full(Some(Bytes::from(body))))
        .unwrap_or_else(|_| Response::new(SimBody::Full(None)))
}

fn text_response(status: StatusCode, text: String) -> Response<SimBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(SimBody::Full(Some(Bytes::from(text))))
        .unwrap_or_else(|_| Response::new(SimBody::Full(None)))
}

pub fn error_response(error: &ApiError) -> Response<SimBody> {
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, &error.to_status());
    if let Some(seconds) = error.retry_after
        && let Ok(value) = header::HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_like_forms() {
        let q = parse_query("labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29&watch=true&bad=%zz&end=%4");
        assert_eq!(param(&q, "labelSelector"), Some("app=web,tier in (a,b)"));
        assert_eq!(param(&q, "watch"), Some("true"));
        assert_eq!(param(&q, "bad"), Some("%zz"));
        assert_eq!(param(&q, "end"), Some("%4"));
    }

    #[test]
    fn boolean_parameters_read_as_the_api_server_reads_them() {
        let q = parse_query("watch=True&allowWatchBookmarks=1&sendInitialEvents=FALSE&a=0&b=&c=yes");
        assert!(flag(&q, "watch"), "Python clients send True");
        assert!(flag(&q, "allowWatchBookmarks"));
        assert!(!flag(&q, "sendInitialEvents"));
        assert!(!flag(&q, "a"));
        assert!(flag(&q, "b"), "an empty value is true");
        assert!(flag(&q, "c"));
        assert!(!flag(&q, "missing"));
    }

    #[test]
    fn urls_map_to_targets() {
        let t = parse_target(&["namespaces", "ns", "pods", "p", "status"]).unwrap();
        assert_eq!(
            (
                t.resource.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("pods", Some("ns"), Some("p"), Some("status"))
        );
        let t = parse_target(&["namespaces", "ns"]).unwrap();
        assert_eq!((t.resource.plural, t.name.as_deref()), ("namespaces", Some("ns")));
        let t = parse_target(&["pods"]).unwrap();
        assert_eq!((t.resource.plural, t.namespace), ("pods", None));
        assert!(parse_target(&["pods", "p"]).is_err());
        assert!(parse_target(&["namespaces", "ns", "widgets"]).is_err());
        assert!(parse_target(&["namespaces", "ns", "events", "e", "status"]).is_err());
        assert!(parse_target(&["nodes", "n1", "status"]).is_ok());
    }
}
