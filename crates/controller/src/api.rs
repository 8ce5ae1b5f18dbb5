//! The northbound API over HTTP, shaped like Windows Server 2016's Network Controller:
//!
//! - `GET /networking/v1/{collection}`: `{"value": [...], "nextLink": ""}`
//! - `GET|PUT|DELETE /networking/v1/{collection}/{id}` (`loadBalancerManager/config` and
//!   the other singletons are `{collection}/{id}` too)
//! - `GET /networking/v1/{collection}/{id}/{child}/{childId}...`: one child resource
//!
//! Every request needs `Authorization: Bearer <token>` (401 otherwise), except
//! `GET /openapi.json`, the API's description (and `GET /metrics`, which
//! [`crate::server::serve`] adds). PUT and DELETE
//! take `If-Match` (412 on a stale etag); responses carry `ETag`. Errors are
//! `{"error": {"code", "message", "target"}}`, `target` being the JSON pointer of the
//! offending field of a 400, and 409s list the referrers.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use strata_model::kind::Kind;

use crate::core::{Controller, Error};
use crate::store::Store;

/// What the handlers share.
pub struct Api<S> {
    pub controller: Mutex<Controller<S>>,
    token: String,
    /// The revision after each write, for whoever compiles the nodes' configurations.
    changes: tokio::sync::watch::Sender<u64>,
    /// Responses given, by status code (for metrics).
    requests: Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl<S> std::fmt::Debug for Api<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl<S: Store + 'static> Api<S> {
    pub fn new(controller: Controller<S>, token: String) -> Arc<Api<S>> {
        let (changes, _) = tokio::sync::watch::channel(controller.revision());
        Arc::new(Api {
            controller: Mutex::new(controller),
            token,
            changes,
            requests: Mutex::default(),
        })
    }

    /// How many responses the API has given, by status code.
    pub fn requests(&self) -> Vec<(u16, u64)> {
        self.requests
            .lock()
            .map(|r| r.iter().map(|(c, n)| (*c, *n)).collect())
            .unwrap_or_default()
    }

    /// The API token, also the secret the node tokens derive from.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Tells of each write's revision.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self, revision: u64) {
        self.changes.send_replace(revision);
    }
}

/// The API's routes.
pub fn router<S: Store + 'static>(api: Arc<Api<S>>) -> Router {
    Router::new()
        .route("/networking/v1/{collection}", get(list::<S>))
        .route(
            "/networking/v1/{collection}/{id}",
            get(get_one::<S>).put(put::<S>).delete(delete::<S>),
        )
        .route(
            "/networking/v1/{collection}/{id}/{*child}",
            get(get_child::<S>),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "no such path; resources are under /networking/v1/",
                None,
            )
        })
        .layer(middleware::from_fn_with_state(
            api.clone(),
            authenticate::<S>,
        ))
        // Added after the layer: the description needs no token.
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        // Outermost: every response is counted, refusals too.
        .layer(middleware::from_fn_with_state(api.clone(), count::<S>))
        .with_state(api)
}

async fn count<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Ok(mut r) = api.requests.lock() {
        *r.entry(response.status().as_u16()).or_default() += 1;
    }
    response
}

fn error(status: StatusCode, code: &str, message: &str, target: Option<&str>) -> Response {
    let mut e = json!({"code": code, "message": message});
    if let Some(t) = target {
        e["target"] = json!(t);
    }
    (status, Json(json!({ "error": e }))).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Error::NotFound(what) => error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{what} does not exist"),
                None,
            ),
            Error::Invalid(e) => error(
                StatusCode::BAD_REQUEST,
                "InvalidProperty",
                &e.message,
                Some(&e.pointer),
            ),
            Error::Conflict { message, referrers } => {
                let body = json!({"error": {"code": "Conflict", "message": message, "referrers": referrers}});
                (StatusCode::CONFLICT, Json(body)).into_response()
            }
            Error::PreconditionFailed { .. } => error(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                &self.to_string(),
                None,
            ),
            Error::Store(e) => {
                tracing::error!(error = %e, "store failed");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "StoreFailed",
                    &e.to_string(),
                    None,
                )
            }
        }
    }
}

async fn authenticate<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), api.token.as_bytes())) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid 'Authorization: Bearer <token>' header is required (the token is in the controller's data directory)",
            None,
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(%method, path, %status, "request failed");
    } else {
        tracing::debug!(%method, path, %status, "request");
    }
    response
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn kind_of(collection: &str) -> Result<&'static Kind, Error> {
    strata_model::kind(collection)
        .ok_or_else(|| Error::NotFound(format!("the collection /networking/v1/{collection}")))
}

fn with_etag(status: StatusCode, doc: Value) -> Response {
    let etag = doc
        .get("etag")
        .and_then(Value::as_str)
        .and_then(|e| HeaderValue::from_str(e).ok());
    let mut r = (status, Json(doc)).into_response();
    if let Some(e) = etag {
        r.headers_mut().insert(header::ETAG, e);
    }
    r
}

async fn list<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Path(collection): Path<String>,
) -> Response {
    let kind = match kind_of(&collection) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let docs = api
        .controller
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .list(kind);
    Json(json!({"value": docs, "nextLink": ""})).into_response()
}

async fn get_one<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Path((collection, id)): Path<(String, String)>,
) -> Response {
    let kind = match kind_of(&collection) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    match api
        .controller
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(kind, &id)
    {
        Ok(doc) => with_etag(StatusCode::OK, doc),
        Err(e) => e.into_response(),
    }
}

async fn get_child<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Path((collection, id, child)): Path<(String, String, String)>,
) -> Response {
    let kind = match kind_of(&collection) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let doc = match api
        .controller
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(kind, &id)
    {
        Ok(doc) => doc,
        Err(e) => return e.into_response(),
    };
    let reference = format!("/{}/{id}/{}", kind.name, child.trim_end_matches('/'));
    match strata_model::locate(&doc, &reference) {
        Some(obj) => with_etag(StatusCode::OK, obj.clone()),
        None => Error::NotFound(reference).into_response(),
    }
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn put<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = match kind_of(&collection) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidJson",
                &format!("the body is not JSON: {e}"),
                Some(""),
            );
        }
    };
    let result = {
        let mut c = api.controller.lock().unwrap_or_else(|e| e.into_inner());
        c.put(kind, &id, body, if_match(&headers).as_deref())
            .map(|put| (put, c.revision()))
    };
    match result {
        Ok((put, revision)) => {
            api.changed(revision);
            with_etag(
                if put.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                put.doc,
            )
        }
        Err(e) => e.into_response(),
    }
}

async fn delete<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let kind = match kind_of(&collection) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let result = {
        let mut c = api.controller.lock().unwrap_or_else(|e| e.into_inner());
        c.delete(kind, &id, if_match(&headers).as_deref())
            .map(|()| c.revision())
    };
    match result {
        Ok(revision) => {
            api.changed(revision);
            StatusCode::OK.into_response()
        }
        Err(e) => e.into_response(),
    }
}
