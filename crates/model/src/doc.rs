//! Documents: a PUT body checked and completed into the stored resource, the references
//! it holds, and the read-only back-references filled in for a GET.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::kind::{Check, Child, Field, Kind, matches};

/// Why a body was refused: the JSON pointer of the offending field and what was
/// expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct Invalid {
    pub pointer: String,
    pub message: String,
}

impl Invalid {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// A reference held by a document: the object holding it (the resource or one of its
/// children), the field of that object's properties it is in, where it is, and what it
/// points to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub from: String,
    pub field: String,
    pub pointer: String,
    pub to: String,
}

/// The form of a reference used to compare and index: without a trailing slash, and
/// lower case (the Network Controller's names and ids are not case-sensitive).
pub fn canonical(reference: &str) -> String {
    reference.trim_end_matches('/').to_ascii_lowercase()
}

/// The reference of a resource of `kind` with id `id`.
pub fn resource_ref(kind: &Kind, id: &str) -> String {
    format!("/{}/{}", kind.name, id)
}

/// Whether `id` can name a resource: 1 to 256 characters, none of them `/`, `?`, `#`,
/// `%` or a control character.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && !id
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '?' | '#' | '%' | '\\'))
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// What the controller supplies to complete a document.
pub struct Stamp<'a> {
    /// The new etag of the resource (and its children).
    pub etag: &'a str,
    /// Makes a fresh instance id.
    pub new_instance_id: &'a mut dyn FnMut() -> String,
    /// `provisioningState` of the resource and its children.
    pub provisioning_state: &'a str,
}

impl std::fmt::Debug for Stamp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stamp")
            .field("etag", &self.etag)
            .field("provisioning_state", &self.provisioning_state)
            .finish_non_exhaustive()
    }
}

/// Checks a PUT body for a resource of `kind` named `id` and completes it into the
/// document to store: resourceId, resourceRef, etag, instanceId (kept from `previous`,
/// the stored version, for the resource and each child that stays) and
/// provisioningState, for the resource and every child; read-only back-references the
/// client sent are dropped.
pub fn complete(
    kind: &Kind,
    id: &str,
    body: Value,
    previous: Option<&Value>,
    stamp: &mut Stamp<'_>,
) -> Result<Value, Invalid> {
    let Value::Object(mut root) = body else {
        return Err(Invalid::new("", "expected a JSON object"));
    };
    match root.get("resourceId") {
        None => {}
        Some(Value::String(s)) if s.eq_ignore_ascii_case(id) || kind.singleton.is_some() => {}
        Some(other) => {
            return Err(Invalid::new(
                "/resourceId",
                format!("expected \"{id}\" (the id in the URL), found {other}"),
            ));
        }
    }
    for owned in ["resourceRef", "etag", "instanceId"] {
        // The controller's to set; a client may send back what it read.
        match root.get(owned) {
            None | Some(Value::String(_)) => {}
            Some(other) => {
                return Err(Invalid::new(
                    format!("/{owned}"),
                    format!("expected a string, found {}", describe(other)),
                ));
            }
        }
    }
    for envelope in ["resourceMetadata", "tags"] {
        match root.get(envelope) {
            None | Some(Value::Object(_)) => {}
            Some(other) => {
                return Err(Invalid::new(
                    format!("/{envelope}"),
                    format!("expected an object, found {}", describe(other)),
                ));
            }
        }
    }
    match root.get("properties") {
        Some(Value::Object(_)) => {}
        None => {
            root.insert("properties".into(), Value::Object(Map::new()));
        }
        Some(other) => {
            return Err(Invalid::new(
                "/properties",
                format!("expected an object, found {}", describe(other)),
            ));
        }
    }
    let reference = resource_ref(kind, id);
    let mut doc = Value::Object(root);
    strip_back_refs(kind, &mut doc);
    let previous_id = previous.and_then(|p| p.get("instanceId")).cloned();
    let instance_id = match previous_id {
        Some(v) => v,
        None => Value::String((stamp.new_instance_id)()),
    };
    if let Value::Object(root) = &mut doc {
        if kind.singleton.is_none() {
            let spelled = root
                .get("resourceId")
                .and_then(Value::as_str)
                .unwrap_or(id)
                .to_string();
            root.insert("resourceId".into(), Value::String(spelled));
        }
        root.insert("resourceRef".into(), Value::String(reference.clone()));
        root.insert("etag".into(), Value::String(stamp.etag.into()));
        root.insert("instanceId".into(), instance_id);
    }
    complete_children(kind.children, &mut doc, previous, &reference, "", stamp)?;
    set_state(&mut doc, stamp.provisioning_state);
    check_fields(kind.fields, &doc)?;
    check_semantics(kind, &doc)?;
    Ok(doc)
}

/// Sets the provisioningState of a resource and of each of its child resources.
pub fn set_provisioning_state(kind: &Kind, doc: &mut Value, state: &str) {
    fn children(list: &[Child], obj: &mut Value, state: &str) {
        for child in list {
            if let Some(Value::Array(items)) = obj
                .get_mut("properties")
                .and_then(|p| p.get_mut(child.name))
            {
                for item in items {
                    set_state(item, state);
                    children(child.children, item, state);
                }
            }
        }
    }
    set_state(doc, state);
    children(kind.children, doc, state);
}

fn set_state(obj: &mut Value, state: &str) {
    if let Some(Value::Object(p)) = obj.get_mut("properties") {
        p.insert("provisioningState".into(), Value::String(state.into()));
    }
}

fn complete_children(
    children: &[Child],
    parent: &mut Value,
    previous: Option<&Value>,
    parent_ref: &str,
    parent_ptr: &str,
    stamp: &mut Stamp<'_>,
) -> Result<(), Invalid> {
    for child in children {
        let ptr = format!("{parent_ptr}/properties/{}", child.name);
        let Some(list) = parent
            .get_mut("properties")
            .and_then(|p| p.get_mut(child.name))
        else {
            continue;
        };
        let Value::Array(items) = list else {
            return Err(Invalid::new(
                ptr,
                format!(
                    "expected an array of {}, found {}",
                    child.name,
                    describe(list)
                ),
            ));
        };
        let mut seen: Vec<String> = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            let item_ptr = format!("{ptr}/{i}");
            let Value::Object(obj) = item else {
                return Err(Invalid::new(
                    item_ptr,
                    format!("expected an object, found {}", describe(item)),
                ));
            };
            let child_id = match obj.get("resourceId") {
                Some(Value::String(s)) if valid_id(s) => s.clone(),
                Some(other) => {
                    return Err(Invalid::new(
                        format!("{item_ptr}/resourceId"),
                        format!("expected an id (1-256 characters, no '/'), found {other}"),
                    ));
                }
                None => {
                    return Err(Invalid::new(
                        format!("{item_ptr}/resourceId"),
                        "expected an id: every child resource needs one",
                    ));
                }
            };
            if seen.iter().any(|s| s.eq_ignore_ascii_case(&child_id)) {
                return Err(Invalid::new(
                    format!("{item_ptr}/resourceId"),
                    format!(
                        "expected an id not used by another of {}: \"{child_id}\" is",
                        child.name
                    ),
                ));
            }
            seen.push(child_id.clone());
            match obj.get("properties") {
                Some(Value::Object(_)) => {}
                None => {
                    obj.insert("properties".into(), Value::Object(Map::new()));
                }
                Some(other) => {
                    return Err(Invalid::new(
                        format!("{item_ptr}/properties"),
                        format!("expected an object, found {}", describe(other)),
                    ));
                }
            }
            let child_ref = format!("{parent_ref}/{}/{child_id}", child.name);
            let before = previous.and_then(|p| find_child(p, child.name, &child_id));
            let instance_id = match before.and_then(|b| b.get("instanceId")) {
                Some(v) => v.clone(),
                None => Value::String((stamp.new_instance_id)()),
            };
            obj.insert("resourceRef".into(), Value::String(child_ref.clone()));
            obj.insert("etag".into(), Value::String(stamp.etag.into()));
            obj.insert("instanceId".into(), instance_id);
            complete_children(child.children, item, before, &child_ref, &item_ptr, stamp)?;
            set_state(item, stamp.provisioning_state);
        }
    }
    Ok(())
}

/// The child `name`/`id` of an object.
pub fn find_child<'a>(parent: &'a Value, name: &str, id: &str) -> Option<&'a Value> {
    parent
        .get("properties")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))?
        .1
        .as_array()?
        .iter()
        .find(|c| {
            c.get("resourceId")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(id))
        })
}

fn find_child_mut<'a>(parent: &'a mut Value, name: &str, id: &str) -> Option<&'a mut Value> {
    parent
        .get_mut("properties")?
        .as_object_mut()?
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))?
        .1
        .as_array_mut()?
        .iter_mut()
        .find(|c| {
            c.get("resourceId")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(id))
        })
}

/// The object a reference names inside its resource's document: the document itself for
/// `/kind/id`, a child for `/kind/id/children/childId`, and so on.
pub fn locate<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let segments: Vec<&str> = reference.trim_matches('/').split('/').collect();
    let mut at = doc;
    for pair in segments.get(2..)?.chunks(2) {
        let [name, id] = pair else { return None };
        at = find_child(at, name, id)?;
    }
    Some(at)
}

fn locate_mut<'a>(doc: &'a mut Value, segments: &[&str]) -> Option<&'a mut Value> {
    let mut at = doc;
    for pair in segments.chunks(2) {
        let [name, id] = pair else { return None };
        at = find_child_mut(at, name, id)?;
    }
    Some(at)
}

/// Every object of a document whose reference matches `pattern`, as (reference, path of
/// child segments).
fn objects_matching(kind: &Kind, doc: &Value, pattern: &str) -> Vec<(String, Vec<String>)> {
    let Some(reference) = doc.get("resourceRef").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![(
        doc,
        reference.to_string(),
        Vec::<String>::new(),
        kind.children,
    )];
    while let Some((obj, r, path, children)) = stack.pop() {
        if matches(pattern, &r) {
            out.push((r.clone(), path.clone()));
        }
        for child in children {
            let Some(items) = obj
                .get("properties")
                .and_then(|p| p.get(child.name))
                .and_then(Value::as_array)
            else {
                continue;
            };
            for item in items {
                if let Some(id) = item.get("resourceId").and_then(Value::as_str) {
                    let mut p = path.clone();
                    p.push(child.name.to_string());
                    p.push(id.to_string());
                    stack.push((item, format!("{r}/{}/{id}", child.name), p, child.children));
                }
            }
        }
    }
    out
}

fn strip_back_refs(kind: &Kind, doc: &mut Value) {
    // Children carry no resourceRef yet: match on the pattern's shape instead.
    for back in kind.back_refs {
        let depth = back.on.trim_matches('/').split('/').count();
        let names: Vec<&str> = back
            .on
            .trim_matches('/')
            .split('/')
            .skip(2)
            .step_by(2)
            .collect();
        debug_assert_eq!(names.len() * 2 + 2, depth);
        strip_at(doc, &names, back.field);
    }
}

fn strip_at(obj: &mut Value, names: &[&str], field: &str) {
    match names.split_first() {
        None => {
            if let Some(Value::Object(p)) = obj.get_mut("properties") {
                p.remove(field);
            }
        }
        Some((name, rest)) => {
            if let Some(Value::Array(items)) =
                obj.get_mut("properties").and_then(|p| p.get_mut(*name))
            {
                for item in items {
                    strip_at(item, rest, field);
                }
            }
        }
    }
}

/// Fills the read-only back-references of a stored document for a GET. `referrers`
/// gives, for the canonical reference of an object, the (reference, field) of every
/// object referring to it.
pub fn fill_back_refs(
    kind: &Kind,
    doc: &mut Value,
    referrers: &dyn Fn(&str) -> Vec<(String, String)>,
) {
    for back in kind.back_refs {
        for (reference, path) in objects_matching(kind, doc, back.on) {
            let mut found: Vec<String> = referrers(&canonical(&reference))
                .into_iter()
                .filter(|(from, field)| {
                    field == back.via && back.from.iter().any(|p| matches(p, from))
                })
                .map(|(from, _)| from)
                .collect();
            found.sort();
            found.dedup();
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            let Some(Value::Object(props)) =
                locate_mut(doc, &segments).and_then(|o| o.get_mut("properties"))
            else {
                continue;
            };
            let as_ref = |r: String| {
                let mut m = Map::new();
                m.insert("resourceRef".into(), Value::String(r));
                Value::Object(m)
            };
            if back.single {
                if let Some(first) = found.into_iter().next() {
                    props.insert(back.field.into(), as_ref(first));
                }
            } else {
                props.insert(
                    back.field.into(),
                    Value::Array(found.into_iter().map(as_ref).collect()),
                );
            }
        }
    }
}

/// Every reference a completed document holds (not counting each child's own
/// resourceRef).
pub fn references(kind: &Kind, doc: &Value) -> Vec<Reference> {
    let mut out = Vec::new();
    let Some(reference) = doc.get("resourceRef").and_then(Value::as_str) else {
        return out;
    };
    refs_of_object(doc, reference, "", kind.children, &mut out);
    out
}

fn refs_of_object(
    obj: &Value,
    reference: &str,
    ptr: &str,
    children: &[Child],
    out: &mut Vec<Reference>,
) {
    let Some(Value::Object(props)) = obj.get("properties") else {
        return;
    };
    for (key, value) in props {
        let at = format!("{ptr}/properties/{}", escape(key));
        match (children.iter().find(|c| c.name == key), value) {
            (Some(child), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(id) = item.get("resourceId").and_then(Value::as_str) else {
                        continue;
                    };
                    let child_ref = format!("{reference}/{}/{id}", child.name);
                    refs_of_object(item, &child_ref, &format!("{at}/{i}"), child.children, out);
                }
            }
            _ => refs_in(value, &at, reference, key, out),
        }
    }
}

fn refs_in(value: &Value, ptr: &str, from: &str, field: &str, out: &mut Vec<Reference>) {
    match value {
        Value::Object(m) => {
            if let Some(Value::String(to)) = m.get("resourceRef") {
                if !to.is_empty() {
                    out.push(Reference {
                        from: from.to_string(),
                        field: field.to_string(),
                        pointer: format!("{ptr}/resourceRef"),
                        to: to.clone(),
                    });
                }
                return;
            }
            for (k, v) in m {
                refs_in(v, &format!("{ptr}/{}", escape(k)), from, field, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs_in(v, &format!("{ptr}/{i}"), from, field, out);
            }
        }
        _ => {}
    }
}

/// What one field's check cannot say.
fn check_semantics(kind: &Kind, doc: &Value) -> Result<(), Invalid> {
    match kind.name {
        "logicalNetworks" => crate::alloc::check_ip_pools(doc),
        "loadBalancers" => {
            let probes = doc
                .pointer("/properties/probes")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (i, probe) in probes.iter().enumerate() {
                let http = probe
                    .pointer("/properties/protocol")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.eq_ignore_ascii_case("Http"));
                let path = probe
                    .pointer("/properties/requestPath")
                    .and_then(Value::as_str);
                if http && !path.is_some_and(|p| p.starts_with('/')) {
                    return Err(Invalid::new(
                        format!("/properties/probes/{i}/properties/requestPath"),
                        "expected a path such as \"/health\": an Http probe needs one",
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("\"{s}\""),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn check_fields(fields: &[Field], doc: &Value) -> Result<(), Invalid> {
    for field in fields {
        let segments: Vec<&str> = field.at.trim_start_matches('/').split('/').collect();
        visit(doc, &segments, String::new(), field)?;
    }
    Ok(())
}

fn visit(v: &Value, segments: &[&str], ptr: String, field: &Field) -> Result<(), Invalid> {
    let Some((first, rest)) = segments.split_first() else {
        return check(field.check, v, &ptr);
    };
    if *first == "*" {
        let Value::Array(items) = v else {
            return Err(Invalid::new(
                ptr,
                format!("expected an array, found {}", describe(v)),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            visit(item, rest, format!("{ptr}/{i}"), field)?;
        }
        return Ok(());
    }
    let at = format!("{ptr}/{first}");
    match v {
        Value::Object(m) => match m.get(*first) {
            // Missing with no list ahead: the field itself is missing (with a list ahead,
            // the list is empty).
            Some(Value::Null) | None if !rest.contains(&"*") => {
                if field.required {
                    let what = expected(field.check);
                    let mut at = at;
                    for segment in rest {
                        at = format!("{at}/{segment}");
                    }
                    return Err(Invalid::new(
                        at,
                        format!("expected {what}: the field is required"),
                    ));
                }
                Ok(())
            }
            Some(Value::Null) | None => Ok(()),
            Some(next) => visit(next, rest, at, field),
        },
        _ => Err(Invalid::new(
            ptr,
            format!("expected an object, found {}", describe(v)),
        )),
    }
}

fn expected(check: Check) -> String {
    match check {
        Check::Port => "a port number 0-65535".into(),
        Check::Asn => "an AS number 1-4294967295".into(),
        Check::Ip => "an IP address".into(),
        Check::IpOrEmpty => "an IP address (or \"\")".into(),
        Check::Prefix => "an address prefix such as 10.0.0.0/24".into(),
        Check::PrefixOrAny => "an address prefix, an address or \"*\"".into(),
        Check::PortRange => "a port range such as \"80\", \"1024-65535\" or \"*\"".into(),
        Check::Int(lo, hi) => format!("an integer {lo}-{hi}"),
        Check::OneOf(options) => format!("one of {}", options.join(", ")),
        Check::Str => "a string".into(),
        Check::Bool => "true or false".into(),
        Check::RefTo(to) => format!("a {{\"resourceRef\": ...}} to {}", to.join(" or ")),
        Check::RefsTo(to) => format!("a list of {{\"resourceRef\": ...}} to {}", to.join(" or ")),
    }
}

fn check(check: Check, v: &Value, ptr: &str) -> Result<(), Invalid> {
    let fail = || {
        Invalid::new(
            ptr,
            format!("expected {}, found {}", expected(check), describe(v)),
        )
    };
    let ok = match check {
        Check::Port => v.as_u64().is_some_and(|n| n <= 65535),
        Check::Asn => v
            .as_u64()
            .is_some_and(|n| (1..=u64::from(u32::MAX)).contains(&n)),
        Check::Ip => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        Check::IpOrEmpty => v
            .as_str()
            .is_some_and(|s| s.is_empty() || s.parse::<IpAddr>().is_ok()),
        Check::Prefix => v.as_str().is_some_and(|s| s.parse::<IpNet>().is_ok()),
        Check::PrefixOrAny => v
            .as_str()
            .is_some_and(|s| s == "*" || s.parse::<IpNet>().is_ok() || s.parse::<IpAddr>().is_ok()),
        Check::PortRange => v.as_str().is_some_and(valid_port_range),
        Check::Int(lo, hi) => v.as_i64().is_some_and(|n| (lo..=hi).contains(&n)),
        Check::OneOf(options) => v
            .as_str()
            .is_some_and(|s| options.iter().any(|o| o.eq_ignore_ascii_case(s))),
        Check::Str => v.is_string(),
        Check::Bool => v.is_boolean(),
        Check::RefTo(to) => return check_ref(v, ptr, to),
        Check::RefsTo(to) => {
            let Value::Array(items) = v else {
                return Err(fail());
            };
            for (i, item) in items.iter().enumerate() {
                check_ref(item, &format!("{ptr}/{i}"), to)?;
            }
            true
        }
    };
    if ok { Ok(()) } else { Err(fail()) }
}

fn check_ref(v: &Value, ptr: &str, to: &[&str]) -> Result<(), Invalid> {
    let target = v.get("resourceRef").and_then(Value::as_str);
    match target {
        Some(r) if to.iter().any(|p| matches(p, r)) => Ok(()),
        Some(r) => Err(Invalid::new(
            format!("{ptr}/resourceRef"),
            format!("expected a reference to {}, found \"{r}\"", to.join(" or ")),
        )),
        None => Err(Invalid::new(
            ptr,
            format!(
                "expected {{\"resourceRef\": ...}} to {}, found {}",
                to.join(" or "),
                describe(v)
            ),
        )),
    }
}

fn valid_port_range(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let port = |p: &str| p.trim().parse::<u16>().ok();
    match s.split_once('-') {
        Some((a, b)) => matches!((port(a), port(b)), (Some(a), Some(b)) if a <= b),
        None => port(s).is_some(),
    }
}

#[cfg(test)]
mod tests;
