//! Three-way merge of MessagePack values.
//!
//! When two agents commit the same key concurrently, both writes derive from
//! the same base value. [`three_way`] combines them when they do not disagree:
//! identical writes, a write on only one side, or maps whose changes touch
//! different keys (recursively). Anything else is a [`Merge::Conflict`] that
//! names where the writes disagree.
//!
//! The merge is pure and total: any bytes, valid MessagePack or not, give a
//! [`Merge`], never a panic.
//!
//! Merged maps are emitted in a fixed order so that the result is
//! deterministic: first the keys of `theirs`, in the order they appear in
//! `theirs`, then the keys found only in `ours`, in the order they appear in
//! `ours`. Keys removed by the merge are left out.

use std::collections::HashMap;

use rmpv::Value;

/// The outcome of merging two concurrent writes of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// The merged value, MessagePack.
    Merged(Vec<u8>),
    /// The writes disagree at `path` (dotted map keys from the value's root, "" for the root).
    Conflict {
        /// Where they disagree.
        path: String,
    },
}

/// Merge `ours` and `theirs`, both derived from `base` (None: the key did not exist at the base).
///
/// The rules, in order:
/// - `ours == theirs` (bytes): `ours`;
/// - `base == ours` (bytes): `theirs`; `base == theirs` (bytes): `ours`;
/// - otherwise all three must decode as exactly one MessagePack value each,
///   `ours` and `theirs` must be maps and `base` a map or absent (an empty
///   map), else the writes conflict at the root;
/// - the maps are merged key by key over the union of their keys, with
///   `b`, `o`, `t` the key's value (or its absence) in base, ours and theirs:
///   `o == t` takes `o`, `o == b` takes `t`, `t == b` takes `o` (an absent
///   value removes the key), two maps merge recursively (against `b` if it is
///   a map, else an empty map), and anything else conflicts at the key's path.
///
/// A map with a repeated key cannot be merged key by key; it conflicts at its
/// own path. Merged maps follow the order described in the [module
/// documentation](self).
pub fn three_way(base: Option<&[u8]>, ours: &[u8], theirs: &[u8]) -> Merge {
    if ours == theirs {
        return Merge::Merged(ours.to_vec());
    }
    if base == Some(ours) {
        return Merge::Merged(theirs.to_vec());
    }
    if base == Some(theirs) {
        return Merge::Merged(ours.to_vec());
    }
    match merge_decoded(base, ours, theirs) {
        Ok(bytes) => Merge::Merged(bytes),
        Err(path) => Merge::Conflict { path },
    }
}

/// The root conflicts, reported with an empty path.
const ROOT: &str = "";

/// Decode and merge the three values; `Err` holds the conflict path.
fn merge_decoded(base: Option<&[u8]>, ours: &[u8], theirs: &[u8]) -> Result<Vec<u8>, String> {
    let root = || ROOT.to_owned();
    let base = match base {
        Some(bytes) => match decode(bytes).ok_or_else(root)? {
            Value::Map(entries) => entries,
            _ => return Err(root()),
        },
        None => Vec::new(),
    };
    let (Value::Map(ours), Value::Map(theirs)) =
        (decode(ours).ok_or_else(root)?, decode(theirs).ok_or_else(root)?)
    else {
        return Err(root());
    };
    let merged = merge_maps(&base, &ours, &theirs, ROOT)?;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &Value::Map(merged)).map_err(|_| root())?;
    Ok(out)
}

/// How deeply a value may nest, in `rmpv` depth units (a map or array level
/// counts two). `rmpv`'s default, 1024, lets a few hundred nested maps
/// overflow a 2 MiB thread stack while decoding, which aborts the process;
/// 128 (about 60 nested maps) keeps decoding, merging and encoding far from
/// that. Deeper values do not decode, so they conflict at the root.
pub const MAX_DEPTH: usize = 128;

/// Exactly one MessagePack value, at most [`MAX_DEPTH`] deep, with no trailing bytes.
fn decode(bytes: &[u8]) -> Option<Value> {
    decode_exact(bytes).ok()
}

/// Like `decode`, saying why not.
pub(crate) fn decode_exact(bytes: &[u8]) -> Result<Value, String> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut rest, MAX_DEPTH).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes follow the value", rest.len()));
    }
    Ok(value)
}

/// Merge three maps key by key. `path` is the maps' own path.
fn merge_maps(
    base: &[(Value, Value)],
    ours: &[(Value, Value)],
    theirs: &[(Value, Value)],
    path: &str,
) -> Result<Vec<(Value, Value)>, String> {
    let conflict = || path.to_owned();
    let base_index = Index::new(base).ok_or_else(conflict)?;
    let ours_index = Index::new(ours).ok_or_else(conflict)?;
    let theirs_index = Index::new(theirs).ok_or_else(conflict)?;

    let mut merged = Vec::with_capacity(theirs.len().max(ours.len()));
    for (key, t) in theirs {
        let value = merge_entry(path, key, base_index.get(key), ours_index.get(key), Some(t))?;
        if let Some(value) = value {
            merged.push((key.clone(), value));
        }
    }
    for (key, o) in ours {
        if theirs_index.get(key).is_some() {
            continue;
        }
        let value = merge_entry(path, key, base_index.get(key), Some(o), None)?;
        if let Some(value) = value {
            merged.push((key.clone(), value));
        }
    }
    Ok(merged)
}

/// Merge one key's values; `None` is an absent key. `path` is the enclosing map's path.
fn merge_entry(
    path: &str,
    key: &Value,
    b: Option<&Value>,
    o: Option<&Value>,
    t: Option<&Value>,
) -> Result<Option<Value>, String> {
    if o == t {
        return Ok(o.cloned());
    }
    if o == b {
        return Ok(t.cloned());
    }
    if t == b {
        return Ok(o.cloned());
    }
    let path = child_path(path, key);
    match (o, t) {
        (Some(Value::Map(o)), Some(Value::Map(t))) => {
            let b = match b {
                Some(Value::Map(b)) => b.as_slice(),
                _ => &[],
            };
            merge_maps(b, o, t, &path).map(|merged| Some(Value::Map(merged)))
        }
        _ => Err(path),
    }
}

/// `path` extended by `key`: string keys as-is, other keys by their `Display`.
fn child_path(path: &str, key: &Value) -> String {
    let segment = match key {
        Value::String(s) => match s.as_str() {
            Some(s) => s.to_owned(),
            None => key.to_string(),
        },
        _ => key.to_string(),
    };
    if path.is_empty() { segment } else { format!("{path}.{segment}") }
}

/// Key lookup in a map's entries, by `Value` equality.
///
/// Valid UTF-8 string keys (the usual case) are hashed; a valid string equals
/// no other kind of value, so only the remaining keys are compared one by one.
struct Index<'a> {
    entries: &'a [(Value, Value)],
    strings: HashMap<&'a str, usize>,
    /// Positions of the keys that are not valid strings.
    others: Vec<usize>,
}

impl<'a> Index<'a> {
    /// `None` if a key is repeated.
    fn new(entries: &'a [(Value, Value)]) -> Option<Self> {
        let mut index = Self { entries, strings: HashMap::with_capacity(entries.len()), others: Vec::new() };
        for (position, (key, _)) in entries.iter().enumerate() {
            match key.as_str() {
                Some(s) => {
                    if index.strings.insert(s, position).is_some() {
                        return None;
                    }
                }
                None => {
                    if index.find_other(key).is_some() {
                        return None;
                    }
                    index.others.push(position);
                }
            }
        }
        Some(index)
    }

    fn get(&self, key: &Value) -> Option<&'a Value> {
        let position = match key.as_str() {
            Some(s) => self.strings.get(s).copied(),
            None => self.find_other(key),
        }?;
        self.entries.get(position).map(|(_, value)| value)
    }

    fn find_other(&self, key: &Value) -> Option<usize> {
        self.others
            .iter()
            .copied()
            .find(|&position| self.entries.get(position).is_some_and(|(k, _)| k == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    fn dec(bytes: &[u8]) -> Value {
        decode(bytes).unwrap()
    }

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
    }

    fn int(i: i64) -> Value {
        Value::from(i)
    }

    fn s(text: &str) -> Value {
        Value::from(text)
    }

    /// Merge encoded values; the merged value decoded, or the conflict path.
    fn merge(base: Option<&Value>, ours: &Value, theirs: &Value) -> Result<Value, String> {
        let base = base.map(enc);
        match three_way(base.as_deref(), &enc(ours), &enc(theirs)) {
            Merge::Merged(bytes) => Ok(dec(&bytes)),
            Merge::Conflict { path } => Err(path),
        }
    }

    /// The value with every map's entries sorted by encoded key, recursively.
    fn normalise(value: &Value) -> Value {
        match value {
            Value::Map(entries) => {
                let mut entries: Vec<(Value, Value)> =
                    entries.iter().map(|(k, v)| (normalise(k), normalise(v))).collect();
                entries.sort_by_key(|(k, _)| enc(k));
                Value::Map(entries)
            }
            Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn identical_writes_merge_to_ours() {
        let x = enc(&map(vec![("a", int(1))]));
        assert_eq!(three_way(None, &x, &x), Merge::Merged(x.clone()));
        assert_eq!(three_way(Some(&enc(&int(7))), &x, &x), Merge::Merged(x.clone()));
        // Even undecodable bytes: the writes agree.
        assert_eq!(three_way(None, &[0xc1], &[0xc1]), Merge::Merged(vec![0xc1]));
    }

    #[test]
    fn one_side_unchanged_takes_the_other() {
        let base = enc(&int(1));
        let changed = enc(&s("two"));
        assert_eq!(three_way(Some(&base), &base, &changed), Merge::Merged(changed.clone()));
        assert_eq!(three_way(Some(&base), &changed, &base), Merge::Merged(changed.clone()));
    }

    #[test]
    fn disjoint_map_keys_merge() {
        let base = map(vec![("a", int(1))]);
        let ours = map(vec![("a", int(1)), ("b", int(2))]);
        let theirs = map(vec![("a", int(1)), ("c", int(3))]);
        let merged = merge(Some(&base), &ours, &theirs).unwrap();
        // Theirs' keys in their order, then ours-only keys.
        assert_eq!(merged, map(vec![("a", int(1)), ("c", int(3)), ("b", int(2))]));
    }

    #[test]
    fn absent_base_is_an_empty_map() {
        let ours = map(vec![("x", int(1)), ("shared", s("same"))]);
        let theirs = map(vec![("shared", s("same")), ("y", int(2))]);
        let merged = merge(None, &ours, &theirs).unwrap();
        assert_eq!(merged, map(vec![("shared", s("same")), ("y", int(2)), ("x", int(1))]));
    }

    #[test]
    fn changes_to_different_keys_merge() {
        let base = map(vec![("a", int(1)), ("b", int(1))]);
        let ours = map(vec![("a", int(2)), ("b", int(1))]);
        let theirs = map(vec![("a", int(1)), ("b", int(3))]);
        assert_eq!(merge(Some(&base), &ours, &theirs).unwrap(), map(vec![("a", int(2)), ("b", int(3))]));
    }

    #[test]
    fn nested_maps_merge() {
        let base = map(vec![("doc", map(vec![("title", s("t")), ("body", s("b"))]))]);
        let ours = map(vec![("doc", map(vec![("title", s("T")), ("body", s("b"))]))]);
        let theirs = map(vec![("doc", map(vec![("title", s("t")), ("body", s("B")), ("tags", int(0))]))]);
        let merged = merge(Some(&base), &ours, &theirs).unwrap();
        assert_eq!(
            merged,
            map(vec![("doc", map(vec![("title", s("T")), ("body", s("B")), ("tags", int(0))]))])
        );
    }

    #[test]
    fn nested_maps_against_a_scalar_base_merge() {
        let base = map(vec![("k", int(0))]);
        let ours = map(vec![("k", map(vec![("a", int(1))]))]);
        let theirs = map(vec![("k", map(vec![("b", int(2))]))]);
        let merged = merge(Some(&base), &ours, &theirs).unwrap();
        assert_eq!(merged, map(vec![("k", map(vec![("b", int(2)), ("a", int(1))]))]));
    }

    #[test]
    fn same_key_different_scalars_conflict_at_its_path() {
        let base = map(vec![("a", map(vec![("b", int(1))]))]);
        let ours = map(vec![("a", map(vec![("b", int(2))]))]);
        let theirs = map(vec![("a", map(vec![("b", int(3))]))]);
        assert_eq!(merge(Some(&base), &ours, &theirs), Err("a.b".to_owned()));

        let ours = map(vec![("top", int(1))]);
        let theirs = map(vec![("top", int(2))]);
        assert_eq!(merge(None, &ours, &theirs), Err("top".to_owned()));
    }

    #[test]
    fn non_string_keys_name_the_path_by_display() {
        let ours = Value::Map(vec![(int(7), int(1))]);
        let theirs = Value::Map(vec![(int(7), int(2))]);
        assert_eq!(merge(None, &ours, &theirs), Err("7".to_owned()));
    }

    #[test]
    fn removal_on_one_side_removes() {
        let base = map(vec![("a", int(1)), ("b", int(2))]);
        let ours = map(vec![("a", int(1))]);
        let theirs = map(vec![("a", int(1)), ("b", int(2)), ("c", int(3))]);
        assert_eq!(merge(Some(&base), &ours, &theirs).unwrap(), map(vec![("a", int(1)), ("c", int(3))]));
        assert_eq!(merge(Some(&base), &theirs, &ours).unwrap(), map(vec![("a", int(1)), ("c", int(3))]));
    }

    #[test]
    fn removal_against_a_change_conflicts() {
        let base = map(vec![("a", int(1))]);
        let ours = map(vec![]);
        let theirs = map(vec![("a", int(2))]);
        assert_eq!(merge(Some(&base), &ours, &theirs), Err("a".to_owned()));
        assert_eq!(merge(Some(&base), &theirs, &ours), Err("a".to_owned()));
    }

    #[test]
    fn removal_on_both_sides_removes() {
        let base = map(vec![("a", int(1)), ("b", int(2))]);
        let ours = map(vec![("b", int(3))]);
        let theirs = map(vec![("c", int(4))]);
        assert_eq!(merge(Some(&base), &ours, &theirs), Err("b".to_owned()));
        let ours = map(vec![("x", int(3))]);
        assert_eq!(merge(Some(&base), &ours, &theirs).unwrap(), map(vec![("c", int(4)), ("x", int(3))]));
    }

    #[test]
    fn non_maps_conflict_at_the_root() {
        assert_eq!(merge(Some(&int(1)), &int(2), &int(3)), Err(String::new()));
        assert_eq!(merge(None, &map(vec![("a", int(1))]), &int(3)), Err(String::new()));
        assert_eq!(merge(None, &Value::Array(vec![int(1)]), &Value::Array(vec![int(2)])), Err(String::new()));
        // A base that is not a map conflicts too.
        assert_eq!(
            merge(Some(&int(0)), &map(vec![("a", int(1))]), &map(vec![("b", int(1))])),
            Err(String::new())
        );
    }

    #[test]
    fn garbage_conflicts_without_panicking() {
        let good = enc(&map(vec![("a", int(1))]));
        let other = enc(&map(vec![("b", int(1))]));
        let conflict = Merge::Conflict { path: String::new() };
        assert_eq!(three_way(None, &[0xc1], &good), conflict);
        assert_eq!(three_way(None, &good, &[0xde, 0xff, 0xff]), conflict);
        assert_eq!(three_way(Some(&[0xdf, 0xff, 0xff, 0xff, 0xff]), &good, &other), conflict);
        // Trailing bytes after a valid value.
        let mut trailing = other;
        trailing.push(0x00);
        assert_eq!(three_way(None, &good, &trailing), conflict);
        assert_eq!(three_way(None, &[], &good), conflict);
    }

    #[test]
    fn repeated_keys_conflict_at_their_map() {
        let ours = map(vec![("m", Value::Map(vec![(s("k"), int(1)), (s("k"), int(2))]))]);
        let theirs = map(vec![("m", map(vec![("j", int(1))]))]);
        assert_eq!(merge(None, &ours, &theirs), Err("m".to_owned()));
    }

    fn nest(depth: usize, leaf: Value) -> Value {
        (0..depth).fold(leaf, |inner, _| map(vec![("n", inner)]))
    }

    #[test]
    fn moderate_nesting_merges() {
        let depth = 50;
        let path = merge(Some(&nest(depth, int(0))), &nest(depth, int(1)), &nest(depth, int(2))).unwrap_err();
        assert_eq!(path.split('.').count(), depth);
        let ours = nest(depth, map(vec![("y", int(1))]));
        let theirs = nest(depth, map(vec![("x", int(2))]));
        assert_eq!(
            merge(None, &ours, &theirs).unwrap(),
            nest(depth, map(vec![("x", int(2)), ("y", int(1))]))
        );
    }

    #[test]
    fn deep_nesting_conflicts_without_overflowing() {
        // Deep enough to overflow the stack with rmpv's default depth limit.
        let deep = |leaf: u8| {
            let mut bytes = [0x81, 0xa1, b'n'].repeat(5_000);
            bytes.push(leaf);
            bytes
        };
        let conflict = Merge::Conflict { path: String::new() };
        assert_eq!(three_way(Some(&deep(0)), &deep(1), &deep(2)), conflict);
        let arrays = |leaf: u8| {
            let mut bytes = vec![0x91; 100_000];
            bytes.push(leaf);
            bytes
        };
        assert_eq!(three_way(None, &arrays(1), &arrays(2)), conflict);
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            (-2i64..3).prop_map(Value::from),
            prop::sample::select(vec!["x", "y"]).prop_map(Value::from),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_owned)
    }

    fn entries(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
        prop::collection::vec((key(), value), 0..5).prop_map(|pairs| {
            let mut entries: Vec<(Value, Value)> = Vec::new();
            for (k, v) in pairs {
                if !entries.iter().any(|(existing, _)| existing.as_str() == Some(k.as_str())) {
                    entries.push((Value::from(k), v));
                }
            }
            Value::Map(entries)
        })
    }

    /// A map with small string keys and small int, string or nested-map values.
    fn map_value() -> impl Strategy<Value = Value> {
        entries(leaf().prop_recursive(2, 16, 4, |inner| prop_oneof![2 => leaf(), 1 => entries(inner)]))
    }

    proptest! {
        #[test]
        fn identical_writes_merge(b in prop::option::of(map_value()), x in map_value()) {
            let b = b.as_ref().map(enc);
            let x = enc(&x);
            prop_assert_eq!(three_way(b.as_deref(), &x, &x), Merge::Merged(x));
        }

        #[test]
        fn one_side_unchanged_gives_the_other(b in map_value(), x in map_value()) {
            let (b, xv) = (enc(&b), x);
            let x = enc(&xv);
            for merged in [three_way(Some(&b), &b, &x), three_way(Some(&b), &x, &b)] {
                match merged {
                    Merge::Merged(bytes) => prop_assert_eq!(dec(&bytes), xv.clone()),
                    Merge::Conflict { path } => prop_assert!(false, "conflict at {path:?}"),
                }
            }
        }

        #[test]
        fn merge_is_symmetric(b in prop::option::of(map_value()), o in map_value(), t in map_value()) {
            let b = b.as_ref().map(enc);
            let (o, t) = (enc(&o), enc(&t));
            match (three_way(b.as_deref(), &o, &t), three_way(b.as_deref(), &t, &o)) {
                (Merge::Conflict { .. }, Merge::Conflict { .. }) => {}
                (Merge::Merged(x), Merge::Merged(y)) => {
                    prop_assert_eq!(normalise(&dec(&x)), normalise(&dec(&y)));
                }
                (x, y) => prop_assert!(false, "asymmetric: {x:?} vs {y:?}"),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            b in prop::option::of(prop::collection::vec(any::<u8>(), 0..48)),
            o in prop::collection::vec(any::<u8>(), 0..48),
            t in prop::collection::vec(any::<u8>(), 0..48),
            header in prop::sample::select(vec![None, Some(0x81u8), Some(0x82), Some(0x83)]),
        ) {
            let _ = three_way(b.as_deref(), &o, &t);
            // Behind a small map header, the bytes are more often partly valid.
            let framed = |bytes: &[u8]| header.into_iter().chain(bytes.iter().copied()).collect::<Vec<u8>>();
            let b = b.as_deref().map(framed);
            let _ = three_way(b.as_deref(), &framed(&o), &framed(&t));
        }
    }
}
