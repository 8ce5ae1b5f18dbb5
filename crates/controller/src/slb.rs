//! The SLB manager: what the host agents report (their provider addresses, their DIPs'
//! health) becomes part of every Mux's configuration. Sans-IO: it takes reports and says
//! whether the compiled configurations must change.
//!
//! A host agent's report (southbound `Report`) reads:
//!
//! ```json
//! {"providerAddresses": ["192.168.233.21"],
//!  "dips": [{"dip": "192.168.100.74", "healthy": true}]}
//! ```
//!
//! `dips` lists every DIP the host has programmed (with its probe's verdict, healthy if
//! it has no probe): the Muxes are given a DIP only once its host can take its traffic.
//!
//! An agent that goes away leaves what it reported in place: the data path keeps the
//! last known state until the host says otherwise.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;
use strata_model::compile::Observed;
use strata_model::doc::canonical;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HostReport {
    #[serde(default)]
    provider_addresses: Option<Vec<IpAddr>>,
    #[serde(default)]
    dips: Option<Vec<DipHealth>>,
}

#[derive(Debug, Deserialize)]
struct DipHealth {
    dip: IpAddr,
    healthy: bool,
}

/// The SLB manager's view of the hosts.
#[derive(Debug, Default)]
pub struct SlbManager {
    observed: Observed,
}

/// A DIP whose health a report changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    pub host: String,
    pub dip: IpAddr,
    pub healthy: bool,
}

impl SlbManager {
    pub fn new() -> SlbManager {
        SlbManager::default()
    }

    pub fn observed(&self) -> &Observed {
        &self.observed
    }

    /// Takes a report from node `node` (a server's id). Returns the DIPs whose health it
    /// changed, and whether anything the Muxes carry changed; a report that is not a
    /// host's (a Mux's BGP state) changes nothing here.
    pub fn report(&mut self, node: &str, status: &Value) -> (Vec<HealthChange>, bool) {
        let Ok(report) = HostReport::deserialize(status) else {
            return (Vec::new(), false);
        };
        let mut changed = false;
        if let Some(pas) = report.provider_addresses {
            let server = canonical(&format!("/servers/{node}"));
            if self.observed.provider_addresses.get(&server) != Some(&pas) {
                if pas.is_empty() {
                    self.observed.provider_addresses.remove(&server);
                } else {
                    self.observed.provider_addresses.insert(server, pas);
                }
                changed = true;
            }
        }
        let server = canonical(&format!("/servers/{node}"));
        let mut health = Vec::new();
        let Some(dips) = report.dips else {
            return (health, changed);
        };
        let programmed: std::collections::BTreeSet<IpAddr> = dips.iter().map(|d| d.dip).collect();
        if self.observed.programmed.get(&server) != Some(&programmed) {
            self.observed.programmed.insert(server.clone(), programmed);
            changed = true;
        }
        for d in dips {
            let was_healthy = !self.observed.down.contains(&d.dip);
            if was_healthy == d.healthy {
                continue;
            }
            if d.healthy {
                self.observed.down.remove(&d.dip);
            } else {
                self.observed.down.insert(d.dip);
            }
            health.push(HealthChange {
                host: node.to_string(),
                dip: d.dip,
                healthy: d.healthy,
            });
        }
        changed |= !health.is_empty();
        (health, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_hosts_report_sets_its_provider_address_and_its_dips_health() {
        let mut m = SlbManager::new();
        let (health, changed) = m.report(
            "HyperVHost",
            &json!({"providerAddresses": ["192.168.233.21"], "dips": [{"dip": "192.168.100.74", "healthy": true}]}),
        );
        assert!(changed);
        assert!(health.is_empty(), "healthy is the default: nothing changed");
        assert_eq!(
            m.observed().provider_addresses["/servers/hypervhost"],
            vec!["192.168.233.21".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            m.observed().programmed["/servers/hypervhost"],
            ["192.168.100.74".parse::<IpAddr>().unwrap()].into()
        );
        // The same again: nothing changes.
        let (_, changed) = m.report(
            "HyperVHost",
            &json!({"providerAddresses": ["192.168.233.21"], "dips": [{"dip": "192.168.100.74", "healthy": true}]}),
        );
        assert!(!changed);
        // A second DIP programmed: the Muxes are to get it.
        let (health, changed) = m.report(
            "HyperVHost",
            &json!({"dips": [{"dip": "192.168.100.74", "healthy": true}, {"dip": "192.168.100.75", "healthy": true}]}),
        );
        assert!(changed);
        assert!(health.is_empty());
        assert_eq!(m.observed().programmed["/servers/hypervhost"].len(), 2);
        let (health, changed) = m.report(
            "HyperVHost",
            &json!({"dips": [{"dip": "192.168.100.74", "healthy": false}]}),
        );
        assert!(changed);
        assert_eq!(
            health,
            [HealthChange {
                host: "HyperVHost".into(),
                dip: "192.168.100.74".parse().unwrap(),
                healthy: false
            }]
        );
        assert!(
            m.observed()
                .down
                .contains(&"192.168.100.74".parse().unwrap())
        );
        let (health, _) = m.report(
            "HyperVHost",
            &json!({"dips": [{"dip": "192.168.100.74", "healthy": true}]}),
        );
        assert_eq!(health.len(), 1);
        assert!(m.observed().down.is_empty());
        // No addresses: the host is forgotten.
        let (_, changed) = m.report("HyperVHost", &json!({"providerAddresses": []}));
        assert!(changed);
        assert!(m.observed().provider_addresses.is_empty());
    }

    #[test]
    fn a_report_that_is_not_a_hosts_changes_nothing() {
        let mut m = SlbManager::new();
        assert_eq!(
            m.report("MuxVM", &json!({"bgp": "Established"})),
            (Vec::new(), false)
        );
        assert_eq!(m.report("MuxVM", &json!(7)), (Vec::new(), false));
        assert_eq!(m.observed(), &Observed::default());
    }
}
