//! Running the controller: its data directory (the store and the API token), and the API
//! served on a TCP listener.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use crate::api::{self, Api};
use crate::core::Controller;
use crate::store::{RedbStore, Store};

/// Random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// The API token in `dir/token`, created (readable only by its owner) if missing.
pub fn token(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token: String = random_bytes::<32>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tmp = dir.join("token.new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

/// A controller over the data directory `dir` (created if missing): its store and token.
pub fn open(dir: &Path) -> anyhow::Result<Arc<Api<RedbStore>>> {
    std::fs::create_dir_all(dir)?;
    let token = token(dir)?;
    let store = RedbStore::open(&dir.join("store.redb"))?;
    let seed = u64::from_le_bytes(random_bytes::<8>()?);
    let controller = Controller::open(store, seed)?;
    tracing::info!(
        resources = controller.len(),
        revision = controller.revision(),
        dir = %dir.display(),
        "store opened"
    );
    Ok(Api::new(controller, token))
}

/// Serves the API, and its metrics at `GET /metrics` (no token needed), until the
/// future is dropped or the listener fails.
pub async fn serve<S: Store + 'static>(
    listener: tokio::net::TcpListener,
    api: Arc<Api<S>>,
) -> std::io::Result<()> {
    let metrics = axum::Router::new().route(
        "/metrics",
        axum::routing::get({
            let api = api.clone();
            move || async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        crate::metrics::CONTENT_TYPE,
                    )],
                    crate::metrics::controller(&api),
                )
            }
        }),
    );
    axum::serve(listener, metrics.merge(api::router(api))).await
}

/// Serves the southbound protocol on `listener`: compiles each node's configuration as
/// the resources change and sends it to the node's agent.
pub async fn serve_southbound<S: Store + 'static>(
    listener: tokio::net::TcpListener,
    api: Arc<Api<S>>,
    timers: strata_southbound::Timers,
) -> std::io::Result<()> {
    let (configs_tx, configs_rx) =
        tokio::sync::watch::channel(crate::southbound::Configs::default());
    let changes = api.subscribe();
    let hub = Arc::new(std::sync::Mutex::new(crate::hub::Hub::new(api.token())));
    let reported = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(crate::southbound::compile_loop(
        api,
        hub.clone(),
        changes,
        reported.clone(),
        configs_tx,
    ));
    crate::southbound::serve(listener, hub, reported, configs_rx, timers).await
}
