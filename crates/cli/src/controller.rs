//! `strata controller`: the network controller's API on a TCP address, its store in a
//! data directory.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

/// Serves until SIGTERM or SIGINT.
pub(crate) fn run(
    data_dir: &Path,
    listen: SocketAddr,
    southbound: SocketAddr,
) -> anyhow::Result<()> {
    let api = strata_controller::server::open(data_dir)
        .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let local = listener.local_addr()?;
        let agents = tokio::net::TcpListener::bind(southbound)
            .await
            .with_context(|| format!("listening for agents on {southbound}"))?;
        let agents_at = agents.local_addr()?;
        println!(
            "controller: http://{local}/networking/v1/ (token in {}); agents: {agents_at}",
            data_dir.join("token").display()
        );
        tracing::info!(%local, "serving the API");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let timers = strata_southbound::Timers::default();
        tokio::select! {
            served = strata_controller::server::serve(listener, api.clone()) => served?,
            served = strata_controller::server::serve_southbound(agents, api, timers) => served?,
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
            _ = term.recv() => tracing::info!("terminated"),
        }
        Ok(())
    })
}
