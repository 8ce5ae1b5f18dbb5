//! Prometheus metrics: the controller's own (`GET /metrics` beside its API), and the
//! exposition every Strata daemon serves.
//!
//! prometheus-client writes OpenMetrics text; `promtool check metrics` and older
//! scrapers read the Prometheus text format (0.0.4), in which a counter family is named
//! as its samples are (`x_total`) and there is no `# EOF`. [`exposition`] writes that.

use std::collections::{BTreeMap, HashSet};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::api::Api;
use crate::store::Store;

/// Label pairs.
pub type Labels = Vec<(String, String)>;

/// The content type of [`exposition`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry's metrics in the Prometheus text format.
pub fn exposition(registry: &Registry) -> String {
    let mut openmetrics = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut openmetrics, registry);
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// A counter family, registered.
pub fn counter(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    registry.register(name, help, f.clone());
    f
}

/// A gauge family, registered.
pub fn gauge(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    registry.register(name, help, f.clone());
    f
}

/// Label pairs from `(name, value)`s.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The controller's metrics: API responses by status code, and resources by collection
/// and provisioningState.
pub fn controller<S: Store + 'static>(api: &Api<S>) -> String {
    let mut registry = Registry::with_prefix("strata");
    let requests = counter(
        &mut registry,
        "api_requests",
        "Responses of the network controller's API, by status code",
    );
    let resources = gauge(
        &mut registry,
        "resources",
        "Resources of the network controller, by collection and provisioningState",
    );
    for (code, n) in api.requests() {
        requests
            .get_or_create(&labels(&[("code", &code.to_string())]))
            .inc_by(n);
    }
    let mut counts: BTreeMap<(&str, String), i64> = BTreeMap::new();
    if let Ok(controller) = api.controller.lock() {
        for kind in strata_model::kind::KINDS {
            for doc in controller.documents(kind.name) {
                let state = doc
                    .pointer("/properties/provisioningState")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                *counts.entry((kind.name, state)).or_default() += 1;
            }
        }
    }
    for ((collection, state), n) in counts {
        resources
            .get_or_create(&labels(&[
                ("collection", collection),
                ("provisioning_state", &state),
            ]))
            .set(n);
    }
    exposition(&registry)
}
