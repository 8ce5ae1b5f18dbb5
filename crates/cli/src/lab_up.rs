//! `strata lab up`: the lab on the wall clock, its network controller's API served on
//! loopback, so a person (or `strata ctl`) changes the running lab and sees the effect;
//! beside it, the dashboard and the metrics (see [`crate::dashboard`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use strata_lab::{Clock, Lab};

/// Runs the lab until SIGINT or SIGTERM (or `seconds`).
pub(crate) fn up(
    file: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
    listen: SocketAddr,
    seconds: Option<u64>,
) -> anyhow::Result<bool> {
    if !listen.ip().is_loopback() {
        anyhow::bail!("the lab's API serves on loopback only; {listen} is not");
    }
    let topology = crate::load(file)?;
    let dir = data_dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("strata-lab-{}", topology.name)));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let token = strata_controller::server::token(&dir)
        .with_context(|| format!("the API token in {}", dir.display()))?;
    let name = topology.name.clone();
    let mut lab = Lab::with_secret(topology, Clock::Wall, token)?;
    let api = lab
        .nc()
        .map(|nc| nc.api.clone())
        .context("this lab has no network controller (no node has [node.controller])")?;
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(std::sync::Mutex::new(crate::dashboard::Live::default()));
    let (jobs_tx, jobs) = std::sync::mpsc::channel();
    let pages = crate::dashboard::router(live.clone(), jobs_tx, lab.waker());
    let local = serve(api, pages, lab.waker(), stop.clone(), listen)?;
    println!("lab {name}: booting on the wall clock");
    let (up, all) = crate::boot(&mut lab);
    println!(
        "boot: {up}/{all} BGP sessions established, agents {} at t={:.3}s",
        if lab.converged() {
            "converged"
        } else {
            "not converged"
        },
        lab.now().as_secs_f64()
    );
    crate::dashboard::publish(&lab, &live);
    print_where(local, &dir);
    let until = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut published = Instant::now();
    while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u) {
        lab.run_for(Duration::from_millis(100));
        crate::dashboard::run_jobs(&mut lab, &jobs);
        if published.elapsed() >= Duration::from_millis(500) {
            crate::dashboard::publish(&lab, &live);
            published = Instant::now();
        }
    }
    println!("lab {name}: down at t={:.3}s", lab.now().as_secs_f64());
    Ok(true)
}

fn print_where(local: SocketAddr, dir: &Path) {
    let token = dir.join("token");
    println!("dashboard: http://{local}/ (metrics: http://{local}/metrics)");
    println!(
        "controller: http://{local}/networking/v1/ (token in {})",
        token.display()
    );
    println!(
        "try: STRATA_CONTROLLER=http://{local} STRATA_TOKEN_FILE={} strata ctl get loadBalancers",
        token.display()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// Serves the API on a thread of its own; every write wakes the lab. Returns the address
/// once listening.
fn serve(
    api: Arc<strata_controller::api::Api<strata_controller::MemStore>>,
    pages: axum::Router,
    waker: strata_lab::Waker,
    stop: Arc<AtomicBool>,
    listen: SocketAddr,
) -> anyhow::Result<SocketAddr> {
    let (ready, bound) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lab-api".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(listen).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ =
                            ready
                                .send(Err(anyhow::Error::from(e)
                                    .context(format!("listening on {listen}"))));
                        return;
                    }
                };
                let _ = ready.send(listener.local_addr().map_err(anyhow::Error::from));
                let mut changes = api.subscribe();
                let wake = waker.clone();
                tokio::spawn(async move {
                    while changes.changed().await.is_ok() {
                        wake.wake();
                    }
                });
                tokio::spawn(async move {
                    let Ok(mut term) =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                    stop.store(true, Ordering::Relaxed);
                    waker.wake();
                });
                let app = pages.merge(strata_controller::api::router(api));
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "the lab's API stopped");
                }
            });
        })?;
    bound.recv().context("the API thread")?
}
