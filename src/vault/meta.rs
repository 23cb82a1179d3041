//! `meta.json`: raft's `SnapshotMeta`, of which a stowage snapshot records the facts an
//! operator looks for (which raft index and term, which servers, how large).
//!
//! Go's `encoding/json` wrote it and matches member names without regard to case when it
//! reads it back, so this reader does the same.

use serde_json::{Map, Value};

use super::{MemberName, VaultSnapshotError};

/// The facts of a snapshot's `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftMeta {
    /// raft's snapshot format version (`Version`).
    pub version: Option<u64>,
    /// raft's snapshot id (`ID`, `<term>-<index>-<ms>`).
    pub id: Option<String>,
    pub index: u64,
    pub term: u64,
    /// `ConfigurationIndex`.
    pub configuration_index: Option<u64>,
    /// `Size`: the length of `state.bin`.
    pub size: u64,
    /// `Configuration.Servers`, as `{id, address, suffrage}`.
    pub servers: Vec<Value>,
}

fn bad(reason: impl Into<String>) -> VaultSnapshotError {
    VaultSnapshotError::BadMember {
        member: MemberName::Meta,
        reason: reason.into(),
    }
}

/// The member of `object` named `name` in any case, as Go's decoder finds it.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn number(object: &Map<String, Value>, name: &str) -> Result<Option<u64>, VaultSnapshotError> {
    match field(object, name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("{name} is not a non-negative integer"))),
    }
}

impl RaftMeta {
    /// Parses `meta.json`.
    ///
    /// # Errors
    /// [`VaultSnapshotError::BadMember`] naming `meta.json` when it is not a JSON object
    /// with integer `Index`, `Term` and `Size`.
    pub fn parse(raw: &[u8]) -> Result<RaftMeta, VaultSnapshotError> {
        let value: Value =
            serde_json::from_slice(raw).map_err(|e| bad(format!("not JSON: {e}")))?;
        let object = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let required =
            |name: &str| number(object, name)?.ok_or_else(|| bad(format!("{name} is missing")));
        let servers = match field(object, "Configuration").and_then(Value::as_object) {
            Some(conf) => match field(conf, "Servers") {
                Some(Value::Array(servers)) => servers
                    .iter()
                    .filter_map(Value::as_object)
                    .map(|server| {
                        let mut out = Map::new();
                        for (to, from) in [
                            ("id", "ID"),
                            ("address", "Address"),
                            ("suffrage", "Suffrage"),
                        ] {
                            if let Some(v) = field(server, from) {
                                out.insert(to.into(), v.clone());
                            }
                        }
                        Value::Object(out)
                    })
                    .collect(),
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        Ok(RaftMeta {
            version: number(object, "Version")?,
            id: field(object, "ID")
                .and_then(Value::as_str)
                .map(str::to_owned),
            index: required("Index")?,
            term: required("Term")?,
            configuration_index: number(object, "ConfigurationIndex")?,
            size: required("Size")?,
            servers,
        })
    }

    /// The facts as a stowage snapshot's `source` object records them (REPOSITORY.md §11).
    pub fn facts(&self) -> Map<String, Value> {
        let mut facts = Map::new();
        facts.insert("raft_index".into(), self.index.into());
        facts.insert("raft_term".into(), self.term.into());
        if let Some(v) = self.configuration_index {
            facts.insert("raft_configuration_index".into(), v.into());
        }
        if let Some(id) = &self.id {
            facts.insert("raft_snapshot_id".into(), id.clone().into());
        }
        if let Some(v) = self.version {
            facts.insert("raft_snapshot_version".into(), v.into());
        }
        facts.insert("raft_servers".into(), self.servers.clone().into());
        facts.insert("state_bytes".into(), self.size.into());
        facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_raft_meta_in_any_case() {
        let raw = br#"{"Version":1,"ID":"3-1057-1700000000000","Index":1057,"Term":3,"Peers":"ka4xMjcuMC4wLjE6ODIwMQ==","Configuration":{"Servers":[{"Suffrage":0,"ID":"node1","Address":"127.0.0.1:8201"}]},"ConfigurationIndex":1,"Size":4096}
"#;
        let meta = RaftMeta::parse(raw).unwrap();
        assert_eq!((meta.index, meta.term, meta.size), (1057, 3, 4096));
        assert_eq!(meta.servers[0]["address"], "127.0.0.1:8201");
        let lower = RaftMeta::parse(br#"{"index":5,"term":1,"size":0}"#).unwrap();
        assert_eq!((lower.index, lower.term, lower.size), (5, 1, 0));
        for (raw, says) in [
            (&b"[]"[..], "not a JSON object"),
            (b"{", "not JSON"),
            (br#"{"Index":1,"Term":1}"#, "Size is missing"),
            (br#"{"Index":-1,"Term":1,"Size":0}"#, "Index is not"),
        ] {
            let err = RaftMeta::parse(raw).unwrap_err().to_string();
            assert!(
                err.starts_with("meta.json: ") && err.contains(says),
                "{err}"
            );
        }
    }
}
