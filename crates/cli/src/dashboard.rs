//! The dashboard `strata lab up` serves beside the controller's API: a page that draws
//! the lab and updates its counters without a reload, the state as JSON, the diagram as
//! SVG, traces started from the page, and `/metrics` for Prometheus.
//!
//! The lab runs on its own thread; it publishes a [`Live`] copy of its state a few times
//! a second, and takes trace requests from a channel between its steps.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use strata_lab::Lab;

/// What the page is: one file, no build step.
const PAGE: &str = include_str!("dashboard/index.html");

/// The lab's state as last published.
#[derive(Debug, Default)]
pub(crate) struct Live {
    state: String,
    svg: String,
    metrics: String,
}

/// A trace asked for from the page.
#[derive(Debug)]
pub(crate) struct TraceJob {
    from: String,
    to: String,
    proto: Option<strata_lab::topology::FlowProto>,
    answer: tokio::sync::oneshot::Sender<Result<Value, String>>,
}

#[derive(Debug, Clone)]
struct Shared {
    live: Arc<Mutex<Live>>,
    jobs: mpsc::Sender<TraceJob>,
    waker: strata_lab::Waker,
}

/// Publishes the lab's state for the page and the scrapers.
pub(crate) fn publish(lab: &Lab, live: &Mutex<Live>) {
    let state = strata_lab::dashboard::state(lab).to_string();
    let svg = strata_lab::diagram::svg::render(&strata_lab::diagram::Graph::of(lab), None);
    let metrics = strata_lab::metrics::render(lab);
    if let Ok(mut l) = live.lock() {
        *l = Live {
            state,
            svg,
            metrics,
        };
    }
}

/// Runs the traces asked for since the last step.
pub(crate) fn run_jobs(lab: &mut Lab, jobs: &mpsc::Receiver<TraceJob>) {
    while let Ok(job) = jobs.try_recv() {
        let result =
            strata_lab::topology::Scenario::flow(lab.topology(), &job.from, &job.to, job.proto)
                .map(|flow| {
                    let r = lab.trace(flow);
                    let graph = strata_lab::diagram::Graph::of(lab);
                    let svg = strata_lab::diagram::svg::render(
                        &graph,
                        Some(strata_lab::diagram::svg::Overlay {
                            request: &r.request,
                            reply: &r.reply,
                        }),
                    );
                    json!({
                        "trace": strata_lab::report::trace_json(&r),
                        "text": strata_lab::report::trace(&r),
                        "svg": svg,
                    })
                });
        let _ = job.answer.send(result);
    }
}

/// The dashboard's routes.
pub(crate) fn router(
    live: Arc<Mutex<Live>>,
    jobs: mpsc::Sender<TraceJob>,
    waker: strata_lab::Waker,
) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }),
        )
        .route("/dashboard/state", get(state))
        .route("/dashboard/diagram.svg", get(diagram))
        .route("/dashboard/trace", post(trace))
        .route("/metrics", get(metrics))
        .with_state(Shared { live, jobs, waker })
}

fn read(s: &Shared, pick: impl Fn(&Live) -> String) -> String {
    s.live.lock().map(|l| pick(&l)).unwrap_or_default()
}

async fn state(State(s): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        read(&s, |l| l.state.clone()),
    )
        .into_response()
}

async fn diagram(State(s): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        read(&s, |l| l.svg.clone()),
    )
        .into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        read(&s, |l| l.metrics.clone()),
    )
        .into_response()
}

fn bad(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn trace(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("the body is not JSON: {e}")),
    };
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(from), Some(to)) = (field("from"), field("to")) else {
        return bad("the body needs \"from\" (a node) and \"to\" (a URL, IP:PORT or IP)".into());
    };
    let proto = match field("proto")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") => None,
        Some("tcp") => Some(strata_lab::topology::FlowProto::Tcp),
        Some("udp") => Some(strata_lab::topology::FlowProto::Udp),
        Some("icmp") => Some(strata_lab::topology::FlowProto::Icmp),
        Some(other) => return bad(format!("proto: expected tcp, udp or icmp, found {other:?}")),
    };
    let (answer, answered) = tokio::sync::oneshot::channel();
    if s.jobs
        .send(TraceJob {
            from,
            to,
            proto,
            answer,
        })
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the lab has stopped"})),
        )
            .into_response();
    }
    s.waker.wake();
    match answered.await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => bad(e),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the lab has stopped"})),
        )
            .into_response(),
    }
}
