//! The HTTP side of the fake: reads each request as the API server would, passes it through the
//! faults a test set up, answers it from the store, and records what was answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::Response;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::fault::Faults;
use crate::patch::{PatchError, PatchFormat};
use crate::representation::Representation;
use crate::route::{ApiPath, RouteError};
use crate::selector::{Selector, SelectorError};
use crate::store::{Deletion, ObjectKey, Origin, Part, Preconditions, Store, StoreError};
use crate::watch::WatchRequest;

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: Method,
    /// Without the query string: `/api/v1/namespaces/default/pods/p/status`.
    pub path: String,
    /// As sent, still percent-encoded; empty when there was none.
    pub query: String,
    /// The status code answered; 200 for a watch whose stream then began.
    pub status: u16,
}

/// Everything the fake holds, shared by its handle, its clients and their watch streams.
#[derive(Default)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    answered: Mutex<Vec<Recorded>>,
}

impl Shared {
    // A test that panics while holding a lock must not turn every later request into a second
    // panic that hides the first, so poisoning is ignored: every write leaves the data whole.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn answered(&self) -> MutexGuard<'_, Vec<Recorded>> {
        self.answered.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error(transparent)]
    Patch(#[from] PatchError),
    #[error("the query string could not be read: {0}")]
    BadQuery(String),
    #[error("resourceVersion {0:?} is not a resource version this server handed out")]
    BadResourceVersion(String),
    #[error("the request body could not be read: {0}")]
    UnreadableBody(String),
    #[error("the request body is not valid JSON: {0}")]
    MalformedBody(#[source] serde_json::Error),
    #[error("the server does not allow {method} on {path}")]
    MethodNotAllowed { method: Method, path: String },
    #[error("the server could not find the requested resource (subresource {0:?})")]
    UnknownSubresource(String),
    #[error("the server answered {0} because a test asked it to fail this request")]
    Injected(StatusCode),
}

impl RequestError {
    fn code_and_reason(&self) -> (StatusCode, &'static str) {
        let refused = |code: StatusCode| (code, reason_for(code));
        match self {
            Self::Route(_) | Self::UnknownSubresource(_) => refused(StatusCode::NOT_FOUND),
            Self::Store(error) => match error {
                StoreError::NotFound { .. } => refused(StatusCode::NOT_FOUND),
                StoreError::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
                StoreError::Conflict { .. } | StoreError::PreconditionFailed { .. } => {
                    refused(StatusCode::CONFLICT)
                }
                StoreError::Mismatch { .. } => refused(StatusCode::BAD_REQUEST),
                StoreError::Invalid(_) => refused(StatusCode::UNPROCESSABLE_ENTITY),
                StoreError::Patch(error) => patch_code_and_reason(error),
                StoreError::Expired { .. } => refused(StatusCode::GONE),
            },
            Self::Patch(error) => patch_code_and_reason(error),
            Self::Selector(_)
            | Self::BadQuery(_)
            | Self::BadResourceVersion(_)
            | Self::UnreadableBody(_)
            | Self::MalformedBody(_) => refused(StatusCode::BAD_REQUEST),
            Self::MethodNotAllowed { .. } => refused(StatusCode::METHOD_NOT_ALLOWED),
            Self::Injected(code) => refused(*code),
        }
    }

    /// The Kubernetes `Status` object for this error, which kube reads into
    /// `kube::Error::Api` with its `code` and `reason`.
    pub(crate) fn status(&self) -> Value {
        let (code, reason) = self.code_and_reason();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        if let Self::Store(error) = self
            && let Some((name, plural)) = error.subject()
        {
            status["details"] = json!({"name": name, "kind": plural});
        }
        status
    }

    fn into_response(self) -> Response {
        json_response(self.code_and_reason().0, &self.status())
    }
}

fn patch_code_and_reason(error: &PatchError) -> (StatusCode, &'static str) {
    let code = match error {
        PatchError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        PatchError::Malformed(_) | PatchError::NotAnObject(_) => StatusCode::BAD_REQUEST,
        PatchError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (code, reason_for(code))
}

/// The `reason` the API server gives with each status code (k8s.io/apimachinery StatusReason).
fn reason_for(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

pub(crate) fn json_response(code: StatusCode, body: &Value) -> Response {
    json_body_response(code, Body::from(body.to_string()))
}

/// Every answer is JSON, streams of watch events included.
pub(crate) fn json_body_response(code: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The tower service a `kube::Client` sends its requests to.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(answer).with_state(shared)
}

async fn answer(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();

    let gates = shared.faults().gates_for(&method, &path, &query);
    for gate in gates {
        gate.pass().await;
    }
    let injected = shared.faults().failure_for(&method, &path, &query);
    let response = match injected {
        Some(code) => RequestError::Injected(code).into_response(),
        None => serve(&shared, request)
            .await
            .unwrap_or_else(RequestError::into_response),
    };

    let status = response.status().as_u16();
    shared.answered().push(Recorded {
        method,
        path,
        query,
        status,
    });
    response
}

async fn serve(shared: &Arc<Shared>, request: Request) -> Result<Response, RequestError> {
    let (parts, body) = request.into_parts();
    let route = ApiPath::parse(parts.uri.path())?;
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map_err(|rejection| RequestError::BadQuery(rejection.body_text()))?;
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|error| RequestError::UnreadableBody(error.to_string()))?;
    let representation = Representation::requested(&parts.headers);
    let part = match route.subresource.as_deref() {
        None => Part::Main,
        Some("status") => Part::Status,
        Some(other) => return Err(RequestError::UnknownSubresource(other.to_owned())),
    };
    let selector = || {
        Selector::parse(
            query.get("labelSelector").map(String::as_str),
            query.get("fieldSelector").map(String::as_str),
        )
    };
    let key = |name: &str| ObjectKey {
        resource: route.resource.clone(),
        namespace: route.namespace.clone().unwrap_or_default(),
        name: name.to_owned(),
    };

    let (code, answer) = match (&parts.method, route.name.as_deref()) {
        (&Method::GET, None) if is_set(query.get("watch")) => {
            let watch = WatchRequest::read(&route, &query, selector()?, representation)?;
            return Ok(watch.respond(Arc::clone(shared)));
        }
        (&Method::GET, None) => {
            let store = shared.store();
            let selector = selector()?;
            let items = store.list(&route.resource, route.namespace.as_deref(), &selector);
            let list = representation.list(
                &route.resource,
                store.kind(&route.resource),
                store.resource_version(),
                items.cloned(),
            );
            (StatusCode::OK, list)
        }
        (&Method::GET, Some(name)) => (
            StatusCode::OK,
            representation.object(shared.store().get(&key(name))?),
        ),
        (&Method::POST, None) if part == Part::Main => {
            let namespace = route.namespace.clone().unwrap_or_default();
            let created = shared.store().create(
                &route.resource,
                &namespace,
                read_json(&body)?,
                Origin::Api,
            )?;
            (StatusCode::CREATED, representation.object(&created))
        }
        (&Method::PUT, Some(name)) => {
            let replaced = shared
                .store()
                .replace(&key(name), read_json(&body)?, part)?;
            (StatusCode::OK, representation.object(&replaced))
        }
        (&Method::PATCH, Some(name)) => {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            let format = PatchFormat::from_content_type(content_type)?;
            let patch = format.read(&body)?;
            let patched = shared.store().patch(&key(name), format, &patch, part)?;
            (StatusCode::OK, representation.object(&patched))
        }
        (&Method::DELETE, Some(name)) if part == Part::Main => {
            let preconditions = delete_preconditions(&body)?;
            match shared.store().delete(&key(name), &preconditions)? {
                Deletion::Pending(object) => (StatusCode::OK, representation.object(&object)),
                Deletion::Removed(object) => (
                    StatusCode::OK,
                    deleted_status(&route.resource.plural, &object),
                ),
            }
        }
        (&Method::DELETE, None) => {
            let preconditions = delete_preconditions(&body)?;
            let selector = selector()?;
            let mut store = shared.store();
            let targets: Vec<ObjectKey> = store
                .list(&route.resource, route.namespace.as_deref(), &selector)
                .map(|object| object_key(&route, object))
                .collect();
            let mut deleted = Vec::new();
            for target in &targets {
                deleted.push(match store.delete(target, &preconditions)? {
                    Deletion::Pending(object) | Deletion::Removed(object) => object,
                });
            }
            let kind = store.kind(&route.resource);
            let list =
                representation.list(&route.resource, kind, store.resource_version(), deleted);
            (StatusCode::OK, list)
        }
        (method, _) => {
            return Err(RequestError::MethodNotAllowed {
                method: method.clone(),
                path: parts.uri.path().to_owned(),
            });
        }
    };
    Ok(json_response(code, &answer))
}

/// `watch=true` (kube) or `watch=1` (kubectl and client-go).
fn is_set(flag: Option<&String>) -> bool {
    flag.is_some_and(|flag| flag == "true" || flag == "1")
}

fn read_json(body: &[u8]) -> Result<Value, RequestError> {
    serde_json::from_slice(body).map_err(RequestError::MalformedBody)
}

/// The preconditions of a DELETE's DeleteOptions body, which kube always sends and other
/// clients may leave empty.
fn delete_preconditions(body: &[u8]) -> Result<Preconditions, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Preconditions::default());
    }
    Ok(Preconditions::from_delete_options(&read_json(body)?))
}

fn object_key(route: &ApiPath, object: &Value) -> ObjectKey {
    let field = |name: &str| {
        object
            .get("metadata")
            .and_then(|metadata| metadata.get(name))
            .and_then(Value::as_str)
    };
    ObjectKey {
        resource: route.resource.clone(),
        namespace: field("namespace").unwrap_or_default().to_owned(),
        name: field("name").unwrap_or_default().to_owned(),
    }
}

/// The answer to a DELETE that removed the object at once, as for a ConfigMap.
fn deleted_status(plural: &str, object: &Value) -> Value {
    let field = |pointer: &str| object.pointer(pointer).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": field("/metadata/name"),
            "kind": plural,
            "uid": field("/metadata/uid"),
        },
    })
}
