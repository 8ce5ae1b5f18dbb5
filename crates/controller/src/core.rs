//! The controller's resource logic, without I/O: PUT, GET and DELETE over the documents,
//! optimistic concurrency by etag, referential integrity both ways, VIP allocation, all
//! written through the [`Store`] before anything is acknowledged.
//!
//! Every document lives in memory, with two indexes kept up to date on each write: who
//! refers to what (for 409s and the read-only back-references), and which VIPs are taken
//! by whom. A write costs the size of the document written, not the number stored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde_json::Value;
use strata_model::alloc::{Pool, next_free_after};
use strata_model::doc::{self, Invalid, Reference, Stamp, canonical, locate};
use strata_model::kind::{Kind, matches};

use crate::store::{Store, StoreError, Write};

/// Why a request failed, and the status it answers with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404.
    #[error("{0} not found")]
    NotFound(String),
    /// 400: the body, at the pointer.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// 409: other resources refer to what the request would remove, or nothing is left
    /// to allocate.
    #[error("{message}")]
    Conflict {
        message: String,
        referrers: Vec<String>,
    },
    /// 412: the If-Match etag is not the resource's.
    #[error("etag {given} does not match the current {current}")]
    PreconditionFailed { given: String, current: String },
    /// 500.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a PUT did.
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    pub doc: Value,
    pub created: bool,
}

type Key = (&'static str, String);

/// The controller's state.
#[derive(Debug)]
pub struct Controller<S> {
    store: S,
    revision: u64,
    docs: BTreeMap<Key, Value>,
    /// Canonical target → (referring object, field), over every stored document.
    referrers: HashMap<String, BTreeSet<(String, String)>>,
    /// What each stored document refers to.
    outgoing: HashMap<Key, Vec<Reference>>,
    /// VIPs taken, and by which object (an LB frontend or a public IP address).
    vips: HashMap<IpAddr, String>,
    /// The last VIP allocated: the next search starts after it.
    last_allocated: Option<IpAddr>,
    /// Resources whose provisioningState is Updating, with the revision of their write,
    /// and the same by revision (writes settle by ranges of revisions).
    updating: BTreeMap<Key, u64>,
    updating_at: BTreeMap<u64, BTreeSet<Key>>,
    /// The last writes, oldest first: revision, collection, id (lowercase).
    log: std::collections::VecDeque<(u64, &'static str, String)>,
    rng: u64,
}

/// How many writes [`Controller::changes_since`] remembers.
const LOG_LEN: usize = 4096;

/// The provisioningState of a resource whose change is still on its way to the nodes.
pub const UPDATING: &str = "Updating";

const FRONTENDS: &str = "/loadBalancers/*/frontendIPConfigurations/*";

impl<S: Store> Controller<S> {
    /// Loads everything the store holds. `seed` makes etags and instance ids (pass a
    /// random value; tests pass a constant).
    pub fn open(store: S, seed: u64) -> Result<Controller<S>, Error> {
        let snapshot = store.load()?;
        let mut c = Controller {
            store,
            revision: snapshot.revision,
            docs: BTreeMap::new(),
            referrers: HashMap::new(),
            outgoing: HashMap::new(),
            vips: HashMap::new(),
            last_allocated: None,
            updating: BTreeMap::new(),
            updating_at: BTreeMap::new(),
            log: std::collections::VecDeque::new(),
            rng: seed,
        };
        for (kind_name, id, doc) in snapshot.docs {
            let Some(kind) = strata_model::kind(&kind_name) else {
                tracing::warn!(
                    kind = kind_name,
                    id,
                    "stored resource of an unknown collection skipped"
                );
                continue;
            };
            if doc.pointer("/properties/provisioningState") == Some(&Value::from(UPDATING)) {
                c.set_updating((kind.name, id.clone()), Some(snapshot.revision));
            }
            c.index((kind.name, id), doc);
        }
        Ok(c)
    }

    /// Records that `key` is Updating since the write of `revision` (`None`: no longer).
    fn set_updating(&mut self, key: Key, revision: Option<u64>) {
        if let Some(old) = self.updating.remove(&key)
            && let Some(keys) = self.updating_at.get_mut(&old)
        {
            keys.remove(&key);
            if keys.is_empty() {
                self.updating_at.remove(&old);
            }
        }
        if let Some(r) = revision {
            self.updating_at.entry(r).or_default().insert(key.clone());
            self.updating.insert(key, r);
        }
    }

    /// Settles the provisioningState of the resources still Updating whose writes came
    /// after revision `after`, up to `upto`: every node the writes changed has applied
    /// them (`Ok`: Succeeded), or one could not (`Err(reason)`: Failed, the reason in
    /// configurationState). The state is kept in memory: after a restart a resource
    /// reads Updating until its nodes have it again.
    pub fn settle(&mut self, after: u64, upto: u64, result: &Result<(), String>) {
        if after >= upto {
            return;
        }
        let decided: Vec<Key> = self
            .updating_at
            .range(after + 1..=upto)
            .flat_map(|(_, keys)| keys.iter().cloned())
            .collect();
        for key in decided {
            self.set_updating(key.clone(), None);
            let (Some(kind), Some(doc)) = (strata_model::kind(key.0), self.docs.get_mut(&key))
            else {
                continue;
            };
            match result {
                Ok(()) => doc::set_provisioning_state(kind, doc, "Succeeded"),
                Err(reason) => {
                    doc::set_provisioning_state(kind, doc, "Failed");
                    if let Some(Value::Object(p)) = doc.get_mut("properties") {
                        p.insert(
                            "configurationState".into(),
                            serde_json::json!({
                                "status": "Failure",
                                "detailedInfo": [{"source": "SoftwareLoadBalancerManager", "code": "Failed", "message": reason}],
                            }),
                        );
                    }
                }
            }
        }
    }

    /// The resources written (created, changed or deleted) after `revision`, as
    /// (collection, id), oldest first; `None` if that reaches back further than the
    /// controller remembers (compile everything again).
    pub fn changes_since(&self, revision: u64) -> Option<Vec<(&'static str, &str)>> {
        if revision >= self.revision {
            return Some(Vec::new());
        }
        match self.log.front() {
            Some((first, ..)) if *first <= revision + 1 => Some(
                self.log
                    .iter()
                    .filter(|(r, ..)| *r > revision)
                    .map(|(_, kind, id)| (*kind, id.as_str()))
                    .collect(),
            ),
            _ => None,
        }
    }

    fn logged(&mut self, kind: &'static str, id: &str) {
        self.log.push_back((self.revision, kind, id.to_string()));
        if self.log.len() > LOG_LEN {
            self.log.pop_front();
        }
    }

    /// The revision of the oldest write still Updating.
    pub fn oldest_updating(&self) -> Option<u64> {
        self.updating_at.keys().next().copied()
    }

    /// The revision of the last write.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Resources stored.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn key(kind: &Kind, id: &str) -> Key {
        (kind.name, id.to_ascii_lowercase())
    }

    fn index(&mut self, key: Key, doc: Value) {
        let Some(kind) = strata_model::kind(key.0) else {
            return;
        };
        let refs = doc::references(kind, &doc);
        for r in &refs {
            self.referrers
                .entry(canonical(&r.to))
                .or_default()
                .insert((r.from.clone(), r.field.clone()));
        }
        for (owner, addr) in vips_of(kind, &doc) {
            self.vips.insert(addr, owner);
        }
        self.outgoing.insert(key.clone(), refs);
        self.docs.insert(key, doc);
    }

    fn unindex(&mut self, key: &Key) -> Option<Value> {
        let doc = self.docs.remove(key)?;
        for r in self.outgoing.remove(key).unwrap_or_default() {
            let target = canonical(&r.to);
            if let Some(set) = self.referrers.get_mut(&target) {
                set.remove(&(r.from, r.field));
                if set.is_empty() {
                    self.referrers.remove(&target);
                }
            }
        }
        if let Some(kind) = strata_model::kind(key.0) {
            for (_, addr) in vips_of(kind, &doc) {
                self.vips.remove(&addr);
            }
        }
        Some(doc)
    }

    fn with_back_refs(&self, kind: &Kind, mut doc: Value) -> Value {
        let referrers = |target: &str| -> Vec<(String, String)> {
            self.referrers
                .get(target)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        doc::fill_back_refs(kind, &mut doc, &referrers);
        doc
    }

    /// One resource, with its read-only back-references.
    pub fn get(&self, kind: &Kind, id: &str) -> Result<Value, Error> {
        let doc = self
            .docs
            .get(&Self::key(kind, id))
            .ok_or_else(|| Error::NotFound(doc::resource_ref(kind, id)))?;
        Ok(self.with_back_refs(kind, doc.clone()))
    }

    /// Every resource of a collection, by id.
    pub fn list(&self, kind: &Kind) -> Vec<Value> {
        self.documents(kind.name)
            .into_iter()
            .map(|d| self.with_back_refs(kind, d.clone()))
            .collect()
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (splitmix(&mut self.rng), splitmix(&mut self.rng));
        uuid(a, b)
    }

    /// The object a reference names, in the stored documents or in `pending` (the
    /// document being written, under `pending_key`).
    fn resolve<'a>(
        &'a self,
        reference: &str,
        pending: Option<(&Key, &'a Value)>,
    ) -> Option<&'a Value> {
        let mut parts = reference.trim_matches('/').split('/');
        let kind = strata_model::kind(parts.next()?)?;
        let id = match kind.singleton {
            Some(s) => s.to_string(),
            None => parts.next()?.to_string(),
        };
        let key = Self::key(kind, &id);
        let doc = match pending {
            Some((k, d)) if *k == key => d,
            _ => self.docs.get(&key)?,
        };
        locate(doc, reference)
    }

    /// The object a reference names among the stored documents.
    pub fn resolve_ref(&self, reference: &str) -> Option<&Value> {
        self.resolve(reference, None)
    }

    /// The stored documents of a collection (without back-references), by id.
    pub fn documents(&self, collection: &str) -> Vec<&Value> {
        let Some(kind) = strata_model::kind(collection) else {
            return Vec::new();
        };
        self.docs
            .range((kind.name, String::new())..)
            .take_while(|((k, _), _)| *k == kind.name)
            .map(|(_, d)| d)
            .collect()
    }

    /// (referring object, field) for the canonical form of a reference.
    pub fn referrers_of(&self, canonical: &str) -> Vec<(String, String)> {
        self.referrers
            .get(canonical)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The vipIpPools of `loadBalancerManager/config`, as the pools are now (with
    /// `pending`, a load balancer or public IP address being written, in place).
    fn vip_pools(&self, pending: Option<(&Key, &Value)>) -> Vec<Pool> {
        // Only a load balancer or a public IP address allocates: the configuration is
        // the stored one.
        let config = self
            .docs
            .get(&("loadBalancerManager", "config".to_string()));
        let refs = config
            .and_then(|c| c.pointer("/properties/vipIpPools"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        refs.iter()
            .filter_map(|r| r.get("resourceRef")?.as_str())
            .filter_map(|r| Pool::of(r, self.resolve(r, pending)?))
            .collect()
    }

    /// Creates or replaces a resource. `if_match`: the etag the client last saw.
    pub fn put(
        &mut self,
        kind: &'static Kind,
        id: &str,
        body: Value,
        if_match: Option<&str>,
    ) -> Result<Put, Error> {
        if let Some(s) = kind.singleton
            && !id.eq_ignore_ascii_case(s)
        {
            return Err(Error::NotFound(format!("/{}/{id}", kind.name)));
        }
        if !doc::valid_id(id) {
            return Err(Invalid::new(
                "/resourceId",
                format!("expected an id (1-256 characters, no '/'), found {id:?}"),
            )
            .into());
        }
        let key = Self::key(kind, id);
        let previous = self.docs.get(&key).cloned();
        let etag = format!("W/\"{}\"", self.uuid());
        let mut ids = splitmix(&mut self.rng);
        let mut new_instance_id = || uuid(splitmix(&mut ids), splitmix(&mut ids));
        let mut stamp = Stamp {
            etag: &etag,
            new_instance_id: &mut new_instance_id,
            provisioning_state: UPDATING,
        };
        let mut doc = doc::complete(kind, id, body, previous.as_ref(), &mut stamp)?;
        // The body first: a bad one is a 400 whatever the etag.
        check_etag(previous.as_ref(), if_match)?;
        let allocated = self.allocate(kind, &key, &mut doc, previous.as_ref())?;
        for r in doc::references(kind, &doc) {
            if self.resolve(&r.to, Some((&key, &doc))).is_none() {
                return Err(Invalid::new(
                    r.pointer,
                    format!(
                        "expected a reference to an existing resource: {} does not exist",
                        r.to
                    ),
                )
                .into());
            }
        }
        if let Some(old) = &previous {
            self.check_still_referable(kind, &key, old, Some(&doc))?;
        }
        self.revision += 1;
        self.store.commit(
            self.revision,
            &[Write::Put {
                kind: kind.name.to_string(),
                id: key.1.clone(),
                doc: doc.clone(),
            }],
        )?;
        self.unindex(&key);
        self.logged(kind.name, &key.1);
        self.set_updating(key.clone(), Some(self.revision));
        self.index(key, doc.clone());
        if allocated.is_some() {
            self.last_allocated = allocated;
        }
        Ok(Put {
            doc: self.with_back_refs(kind, doc),
            created: previous.is_none(),
        })
    }

    /// Removes a resource, unless others refer to it or to one of its children.
    pub fn delete(&mut self, kind: &Kind, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        let key = Self::key(kind, id);
        let Some(old) = self.docs.get(&key).cloned() else {
            return Err(Error::NotFound(doc::resource_ref(kind, id)));
        };
        check_etag(Some(&old), if_match)?;
        self.check_still_referable(kind, &key, &old, None)?;
        self.revision += 1;
        self.store.commit(
            self.revision,
            &[Write::Delete {
                kind: kind.name.to_string(),
                id: key.1.clone(),
            }],
        )?;
        self.unindex(&key);
        self.logged(kind.name, &key.1);
        self.set_updating(key, None);
        Ok(())
    }

    /// 409 if another resource refers to an object of `old` that `new` (None: a
    /// delete) no longer has.
    fn check_still_referable(
        &self,
        kind: &Kind,
        key: &Key,
        old: &Value,
        new: Option<&Value>,
    ) -> Result<(), Error> {
        let Some(own) = old.get("resourceRef").and_then(Value::as_str) else {
            return Ok(());
        };
        let own_canonical = canonical(own);
        let mut lost = Vec::new();
        let mut objects = vec![own.to_string()];
        collect_child_refs(kind.children, old, own, &mut objects);
        for object in objects {
            if new.is_some_and(|n| locate(n, &object).is_some()) {
                continue;
            }
            let Some(set) = self.referrers.get(&canonical(&object)) else {
                continue;
            };
            for (from, _) in set {
                let from_canonical = canonical(from);
                let inside = from_canonical == own_canonical
                    || from_canonical.starts_with(&format!("{own_canonical}/"));
                if !inside {
                    lost.push(format!("{from} refers to {object}"));
                }
            }
        }
        let _ = key;
        if lost.is_empty() {
            return Ok(());
        }
        lost.sort();
        lost.dedup();
        Err(Error::Conflict {
            message: format!("{own} is in use: {}", lost.join("; ")),
            referrers: lost,
        })
    }

    /// Gives Dynamic frontends and public IP addresses a free VIP (keeping the one they
    /// had), and checks that Static ones lie in a vipIpPool and are not taken. Returns
    /// the last address newly allocated.
    fn allocate(
        &self,
        kind: &Kind,
        key: &Key,
        doc: &mut Value,
        previous: Option<&Value>,
    ) -> Result<Option<IpAddr>, Error> {
        let mut allocated = None;
        let sites: Vec<(String, String, &str, &str)> = match kind.name {
            "loadBalancers" => doc
                .pointer("/properties/frontendIPConfigurations")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter(|(_, fe)| {
                    // A frontend on a public IP address takes that address's VIP; one in a
                    // virtual network's subnet is a tenant address, not a VIP.
                    fe.pointer("/properties/publicIPAddress").is_none()
                        && !fe
                            .pointer("/properties/subnet/resourceRef")
                            .and_then(Value::as_str)
                            .is_some_and(|s| matches("/virtualNetworks/*/subnets/*", s))
                })
                .filter_map(|(i, fe)| {
                    let r = fe.get("resourceRef")?.as_str()?.to_string();
                    Some((
                        r,
                        format!("/properties/frontendIPConfigurations/{i}/properties"),
                        "privateIPAddress",
                        "privateIPAllocationMethod",
                    ))
                })
                .collect(),
            "publicIPAddresses" => vec![(
                doc.get("resourceRef")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                "/properties".to_string(),
                "ipAddress",
                "publicIPAllocationMethod",
            )],
            _ => return Ok(None),
        };
        if sites.is_empty() {
            return Ok(None);
        }
        let pools = self.vip_pools(Some((key, doc)));
        let mut taken_here: BTreeSet<IpAddr> = BTreeSet::new();
        for (owner, at, addr_field, method_field) in sites {
            let Some(Value::Object(props)) = doc.pointer_mut(&at) else {
                continue;
            };
            let given = props
                .get(addr_field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let dynamic = props
                .get(method_field)
                .and_then(Value::as_str)
                .is_some_and(|m| m.eq_ignore_ascii_case("Dynamic"));
            let taken = |a: IpAddr| {
                taken_here.contains(&a)
                    || self
                        .vips
                        .get(&a)
                        .is_some_and(|o| canonical(o) != canonical(&owner))
            };
            let addr = if given.is_empty() {
                if !dynamic {
                    return Err(Invalid::new(
                        format!("{at}/{addr_field}"),
                        format!("expected an address: {method_field} is Static"),
                    )
                    .into());
                }
                let kept = previous
                    .and_then(|p| locate(p, &owner))
                    .and_then(|o| o.pointer(&format!("/properties/{addr_field}")))
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<IpAddr>().ok());
                match kept {
                    Some(a) => a,
                    None => next_free_after(&pools, &taken, allocated.or(self.last_allocated)).inspect(|a| allocated = Some(*a)).ok_or_else(|| Error::Conflict {
                        message: if pools.is_empty() {
                            format!("{owner}: no vipIpPools configured in /loadBalancerManager/config to allocate from")
                        } else {
                            format!("{owner}: every address of the vipIpPools is in use")
                        },
                        referrers: Vec::new(),
                    })?,
                }
            } else {
                let Ok(a) = given.parse::<IpAddr>() else {
                    continue;
                };
                if !pools.iter().any(|p| p.contains(a)) {
                    let ranges: Vec<String> = pools
                        .iter()
                        .map(|p| format!("{}-{}", p.start, p.end))
                        .collect();
                    return Err(Invalid::new(
                        format!("{at}/{addr_field}"),
                        if ranges.is_empty() {
                            format!("expected an address of a vipIpPool, found {a}: /loadBalancerManager/config names none")
                        } else {
                            format!("expected an address of a vipIpPool ({}), found {a}", ranges.join(", "))
                        },
                    )
                    .into());
                }
                if taken(a) {
                    let by = self
                        .vips
                        .get(&a)
                        .cloned()
                        .unwrap_or_else(|| "another frontend of this document".into());
                    return Err(Invalid::new(
                        format!("{at}/{addr_field}"),
                        format!("expected a free address, found {a}: in use by {by}"),
                    )
                    .into());
                }
                a
            };
            taken_here.insert(addr);
            props.insert(addr_field.to_string(), Value::String(addr.to_string()));
        }
        Ok(allocated)
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A version-4 UUID from 128 random bits.
fn uuid(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn collect_child_refs(
    children: &[strata_model::kind::Child],
    obj: &Value,
    reference: &str,
    out: &mut Vec<String>,
) {
    for child in children {
        let Some(items) = obj
            .pointer(&format!("/properties/{}", child.name))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for item in items {
            if let Some(id) = item.get("resourceId").and_then(Value::as_str) {
                let r = format!("{reference}/{}/{id}", child.name);
                collect_child_refs(child.children, item, &r, out);
                out.push(r);
            }
        }
    }
}

fn check_etag(current: Option<&Value>, if_match: Option<&str>) -> Result<(), Error> {
    // An empty If-Match names nothing: as if absent.
    let Some(given) = if_match.map(str::trim).filter(|g| !g.is_empty()) else {
        return Ok(());
    };
    let current_etag = current.and_then(|d| d.get("etag")).and_then(Value::as_str);
    match current_etag {
        Some(_) if given == "*" => Ok(()),
        Some(c) if c == given || c.trim_start_matches("W/") == given.trim_start_matches("W/") => {
            Ok(())
        }
        c => Err(Error::PreconditionFailed {
            given: given.to_string(),
            current: c
                .unwrap_or("(none: the resource does not exist)")
                .to_string(),
        }),
    }
}

/// The VIPs a document holds, by owner (frontend or public IP address).
fn vips_of(kind: &Kind, doc: &Value) -> Vec<(String, IpAddr)> {
    let addr = |v: &Value, f: &str| {
        v.pointer(f)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<IpAddr>().ok())
    };
    match kind.name {
        "publicIPAddresses" => doc
            .get("resourceRef")
            .and_then(Value::as_str)
            .zip(addr(doc, "/properties/ipAddress"))
            .map(|(r, a)| vec![(r.to_string(), a)])
            .unwrap_or_default(),
        "loadBalancers" => doc
            .pointer("/properties/frontendIPConfigurations")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|fe| {
                fe.pointer("/properties/publicIPAddress").is_none()
                    && !fe
                        .pointer("/properties/subnet/resourceRef")
                        .and_then(Value::as_str)
                        .is_some_and(|s| matches("/virtualNetworks/*/subnets/*", s))
            })
            .filter_map(|fe| {
                let r = fe.get("resourceRef")?.as_str()?;
                debug_assert!(matches(FRONTENDS, r));
                Some((r.to_string(), addr(fe, "/properties/privateIPAddress")?))
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
