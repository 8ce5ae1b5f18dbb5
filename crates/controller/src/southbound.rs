//! The southbound server: agents connect over TCP, prove who they are with their node
//! token, and receive their node's configuration (a snapshot, then deltas) whenever a
//! write changes it; what they report is logged and kept.
//!
//! A node's token is derived from the controller's secret (its API token) and the node's
//! name, so the controller issues one per node without storing any (`strata ctl
//! node-token NODE` prints it).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_southbound::Timers;
use strata_southbound::frame::{self, Decoder};
use strata_southbound::peer::{Event, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::api::Api;
use crate::hub::Hub;
use crate::store::Store;

pub use strata_southbound::node_token;

pub use strata_southbound::Configs;

/// The hub shared by the connections and the compile loop.
pub type SharedHub = Arc<Mutex<Hub>>;

fn lock(hub: &SharedHub) -> std::sync::MutexGuard<'_, Hub> {
    hub.lock().unwrap_or_else(|e| e.into_inner())
}

/// Compiles each node's configuration whenever the resources change (after a write,
/// at most every 5 ms) or an agent's report changes what the Muxes carry (`reported`;
/// in batches, see [`crate::hub::REPORT_BATCH`]), publishes it to the connections, and
/// settles the resources' provisioningState as the agents apply what they were sent.
pub async fn compile_loop<S: Store + 'static>(
    api: Arc<Api<S>>,
    hub: SharedHub,
    mut changes: watch::Receiver<u64>,
    reported: Arc<Notify>,
    configs: watch::Sender<Configs>,
) {
    let start = tokio::time::Instant::now();
    loop {
        let refresh_at = {
            let mut c = api.controller.lock().unwrap_or_else(|e| e.into_inner());
            let mut hub = lock(&hub);
            let (changed, gone) = hub.refresh(&c, start.elapsed());
            if !changed.is_empty() || !gone.is_empty() {
                tracing::info!(revision = c.revision(), ?changed, ?gone, "compiled");
                configs.send_replace(hub.configs().clone());
            }
            hub.settle(&mut c);
            hub.refresh_at()
        };
        // Reports waiting for their batch: wake for it, whatever else comes.
        let batch = async {
            match refresh_at {
                Some(at) => tokio::time::sleep_until(start + at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = reported.notified() => {}
            () = batch => {}
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Accepts agents until the listener fails.
pub async fn serve(
    listener: TcpListener,
    hub: SharedHub,
    reported: Arc<Notify>,
    configs: watch::Receiver<Configs>,
    timers: Timers,
) -> std::io::Result<()> {
    loop {
        let (stream, from) = listener.accept().await?;
        let (hub, reported, configs) = (hub.clone(), reported.clone(), configs.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &hub, &reported, configs, timers).await {
                tracing::info!(%from, error = %e, "agent connection ended");
            }
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    hub: &SharedHub,
    reported: &Notify,
    mut configs: watch::Receiver<Configs>,
    timers: Timers,
) -> std::io::Result<()> {
    let start = Instant::now();
    let now = || start.elapsed();
    let mut peer = Peer::new(now(), timers);
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut applied: Option<u64> = None;
    loop {
        // What the peer has to say, and the latest configuration once it is accepted.
        let mut out = Vec::new();
        while let Some(event) = peer.poll_event() {
            match &event {
                Event::Send(m) => frame::encode(m, &mut out),
                Event::Close(reason) => {
                    tracing::warn!(
                        node = peer.node().unwrap_or("?"),
                        reason,
                        "closing agent connection"
                    );
                    stream.write_all(&out).await?;
                    return Ok(());
                }
                Event::Accepted { node, applied: has } => {
                    tracing::info!(node, applied = ?has, "agent connected");
                    applied = *has;
                    publish(&mut peer, &configs.borrow(), applied);
                }
                Event::Applied { node, revision } => {
                    tracing::info!(node, revision, "applied");
                    applied = Some(*revision);
                    reported.notify_one();
                }
                Event::Failed {
                    node,
                    revision,
                    reason,
                } => {
                    tracing::warn!(node, revision, reason, "could not apply");
                    reported.notify_one();
                }
                Event::Report { node, status } => {
                    tracing::debug!(node, %status, "report");
                    reported.notify_one();
                }
            }
            for change in lock(hub).event(&event) {
                tracing::info!(host = change.host, dip = %change.dip, healthy = change.healthy, "DIP health");
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            continue;
        }
        let wake = peer
            .poll_at()
            .map_or(Duration::from_secs(1), |t| t.saturating_sub(now()));
        tokio::select! {
            read = stream.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                decoder.push(&buf[..n]);
                loop {
                    match decoder.next_message() {
                        Ok(Some(m)) => {
                            let admit = |node: &str, token: &str| lock(hub).admit(node, token);
                            peer.received(now(), m, &admit);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            peer.malformed(&e.to_string());
                            break;
                        }
                    }
                }
            }
            changed = configs.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                publish(&mut peer, &configs.borrow_and_update(), applied);
            }
            () = tokio::time::sleep(wake) => peer.poll(now()),
        }
    }
}

fn publish(peer: &mut Peer, configs: &Configs, applied: Option<u64>) {
    let Some(node) = peer.node() else {
        return;
    };
    match configs.get(node) {
        Some((revision, config)) => peer.publish(*revision, config, applied),
        None => {
            // The node's resource is gone: nothing more for it.
            peer.end("the node's resource was deleted".into());
        }
    }
}
