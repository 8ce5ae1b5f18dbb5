//! A controller (memory store, token "secret") serving its API, and the southbound
//! protocol, on loopback ports of its own, on a thread of its own.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use strata_controller::{Controller, MemStore, api::Api, server};
use strata_southbound::Timers;

/// Where it serves.
pub struct Served {
    /// `http://127.0.0.1:PORT/networking/v1`
    pub base: String,
    pub agents: std::net::SocketAddr,
}

pub fn start() -> Served {
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let agents = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let served = Served {
        base: format!("http://{}/networking/v1", http.local_addr().unwrap()),
        agents: agents.local_addr().unwrap(),
    };
    http.set_nonblocking(true).unwrap();
    agents.set_nonblocking(true).unwrap();
    let api = Api::new(
        Controller::open(MemStore::default(), 7).unwrap(),
        "secret".into(),
    );
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let http = tokio::net::TcpListener::from_std(http).unwrap();
            let agents = tokio::net::TcpListener::from_std(agents).unwrap();
            tokio::select! {
                r = server::serve(http, api.clone()) => r.unwrap(),
                r = server::serve_southbound(agents, api, Timers::default()) => r.unwrap(),
            }
        });
    });
    served
}
