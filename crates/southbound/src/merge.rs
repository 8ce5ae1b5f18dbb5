//! JSON merge patches (RFC 7396): how a configuration's change travels.

use serde_json::{Map, Value};

/// Applies `patch` to `target` (RFC 7396 section 2).
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(fields) = target {
        for (key, change) in changes {
            if change.is_null() {
                fields.remove(key);
            } else {
                apply(fields.entry(key.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

/// The patch that turns `from` into `to`, or `None` when `to` holds a null (which a
/// merge patch cannot say: send the whole configuration instead).
pub fn diff(from: &Value, to: &Value) -> Option<Value> {
    if has_null(to) {
        return None;
    }
    Some(diff_values(from, to))
}

fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.iter().any(has_null),
        Value::Object(m) => m.values().any(has_null),
        _ => false,
    }
}

fn diff_values(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut patch = Map::new();
            for key in a.keys() {
                if !b.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            for (key, new) in b {
                match a.get(key) {
                    Some(old) if old == new => {}
                    Some(old) => {
                        patch.insert(key.clone(), diff_values(old, new));
                    }
                    None => {
                        patch.insert(key.clone(), new.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        // Arrays and scalars are replaced whole.
        _ => to.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc_7396_appendix_a() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, result) in cases {
            let mut t = target.clone();
            apply(&mut t, &patch);
            assert_eq!(t, result, "{target} + {patch}");
        }
    }

    #[test]
    fn a_diff_applied_gives_the_new_value_and_says_only_what_changed() {
        let from = json!({"vips": [{"vip": "192.168.133.74", "port": 80}], "asn": 64501, "peers": {"a": 1, "b": 2}});
        let to = json!({"vips": [{"vip": "192.168.133.74", "port": 80}, {"vip": "192.168.133.75", "port": 80}], "asn": 64501, "peers": {"a": 1}});
        let patch = diff(&from, &to).unwrap();
        assert_eq!(
            patch,
            json!({"vips": [{"vip": "192.168.133.74", "port": 80}, {"vip": "192.168.133.75", "port": 80}], "peers": {"b": null}})
        );
        let mut t = from.clone();
        apply(&mut t, &patch);
        assert_eq!(t, to);
        assert_eq!(diff(&to, &to), Some(json!({})));
        assert_eq!(
            diff(&from, &json!({"x": null})),
            None,
            "nulls cannot travel in a patch"
        );
        assert_eq!(diff(&from, &json!({"x": [1, null]})), None);
    }

    proptest::proptest! {
        #[test]
        fn any_diff_applies_back(from in arbitrary(), to in arbitrary()) {
            if let Some(patch) = diff(&from, &to) {
                let mut t = from.clone();
                apply(&mut t, &patch);
                proptest::prop_assert_eq!(t, to);
            }
        }
    }

    fn arbitrary() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-c]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
