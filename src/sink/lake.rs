//! Amazon Security Lake as where the service's Parquet goes (the SIEM
//! feed). Security Lake takes a custom source's objects under
//! `ext/<source>/region=…/accountId=…/eventDay=…/` of its bucket, one OCSF
//! class a source, and its provider role may write nowhere else. So each
//! dataset's objects are routed there, under the source registered for the
//! class, and everything else the service writes (intents, dead letters,
//! digest checks, claims) stays in the archive location, the service's own.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use super::objects::{ObjectStore, Put, StoreError};
use crate::integrity::store::Object;
use crate::ocsf::Class;

/// The two stores, seen as one: keys are the archive's, and a dataset's
/// Parquet object lands in the lake.
pub struct LakeStore {
    state: Box<dyn ObjectStore>,
    lake: Box<dyn ObjectStore>,
    /// Custom source name by dataset (every dataset has one).
    sources: BTreeMap<&'static str, String>,
}

impl LakeStore {
    /// `sources`: the custom source registered for a dataset, where it is
    /// not named after it.
    pub fn new(state: Box<dyn ObjectStore>, lake: Box<dyn ObjectStore>, sources: &BTreeMap<String, String>) -> Self {
        let sources = Class::ALL
            .iter()
            .map(|c| (c.dataset(), sources.get(c.dataset()).cloned().unwrap_or_else(|| c.dataset().to_owned())))
            .collect();
        LakeStore { state, lake, sources }
    }

    /// The store `key` is in, and its key there: a dataset's object is in
    /// the lake, under its source; anything else in the state store.
    fn route<'k>(&self, key: &'k str) -> (&dyn ObjectStore, Cow<'k, str>) {
        let in_lake = key.split_once('/').and_then(|(dataset, rest)| {
            let source = self.sources.get(dataset)?;
            rest.ends_with(".parquet").then(|| format!("ext/{source}/{rest}"))
        });
        match in_lake {
            Some(k) => (&*self.lake, Cow::Owned(k)),
            None => (&*self.state, Cow::Borrowed(key)),
        }
    }

    /// The lake's prefix for a listing of a dataset's directory.
    fn lake_prefix(&self, prefix: &str) -> Option<(String, &'static str, String)> {
        let (dataset, rest) = prefix.split_once('/')?;
        let (&dataset, source) = self.sources.get_key_value(dataset)?;
        Some((format!("ext/{source}/"), dataset, rest.to_owned()))
    }
}

impl ObjectStore for LakeStore {
    fn put_file(&self, key: &str, path: &Path, sha256: &[u8; 32], bytes: u64) -> Result<Put, StoreError> {
        let (store, key) = self.route(key);
        store.put_file(&key, path, sha256, bytes)
    }

    fn put_bytes(&self, key: &str, body: &[u8]) -> Result<Put, StoreError> {
        let (store, key) = self.route(key);
        store.put_bytes(&key, body)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (store, key) = self.route(key);
        store.get(&key)
    }

    fn location(&self) -> String {
        format!("{} (Parquet in the Security Lake at {})", self.state.location(), self.lake.location())
    }

    fn put_bytes_with_metadata(
        &self,
        key: &str,
        body: &[u8],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Put, StoreError> {
        let (store, key) = self.route(key);
        store.put_bytes_with_metadata(&key, body, metadata)
    }

    fn get_with_metadata(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let (store, key) = self.route(key);
        store.get_with_metadata(&key)
    }

    fn list(&self, prefix: &str, after: Option<&str>) -> Result<Vec<String>, StoreError> {
        let Some((base, dataset, rest)) = self.lake_prefix(prefix) else { return self.state.list(prefix, after) };
        let after = after.and_then(|a| a.strip_prefix(dataset)).map(|a| format!("{}{}", base.trim_end_matches('/'), a));
        let keys = self.lake.list(&format!("{base}{rest}"), after.as_deref())?;
        Ok(keys.into_iter().filter_map(|k| k.strip_prefix(&base).map(|r| format!("{dataset}/{r}"))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::objects::LocalObjects;

    #[test]
    fn parquet_goes_to_its_source_and_the_rest_stays() {
        let root = std::env::temp_dir().join(format!("trailship-lake-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (state, lake) = (root.join("state"), root.join("lake"));
        let sources = BTreeMap::from([("api_activity".to_owned(), "trailship-api".to_owned())]);
        let store = LakeStore::new(
            Box::new(LocalObjects::open(&state).unwrap()),
            Box::new(LocalObjects::open(&lake).unwrap()),
            &sources,
        );
        let obj = "api_activity/region=us-east-1/accountId=1/eventDay=20261206/kafka-ct-0-1-2.zstd.parquet";
        assert_eq!(store.put_bytes(obj, b"P").unwrap(), Put::Created);
        assert_eq!(store.put_bytes(obj, b"P").unwrap(), Put::Exists, "create-if-absent holds in the lake");
        let auth = "authentication/region=us-east-1/accountId=1/eventDay=20261206/a.zstd.parquet";
        store.put_bytes(auth, b"A").unwrap();
        store.put_bytes("_trailship/kafka/ct/0/00000000000000000001.json", b"{}").unwrap();
        store.put_bytes("_dead_letter/kafka-ct-0-1-2.ndjson", b"{}").unwrap();
        assert!(lake.join("ext/trailship-api/region=us-east-1/accountId=1/eventDay=20261206").is_dir());
        assert!(lake.join("ext/authentication/region=us-east-1").is_dir(), "named after the dataset by default");
        assert!(state.join("_trailship/kafka/ct/0").is_dir() && state.join("_dead_letter").is_dir());
        assert!(!state.join("api_activity").exists() && !lake.join("_trailship/kafka").exists());
        assert_eq!(store.get(obj).unwrap().as_deref(), Some(&b"P"[..]));
        assert_eq!(store.list("api_activity/region=us-east-1/", None).unwrap(), [obj]);
        assert_eq!(store.list("_trailship/kafka/", None).unwrap(), ["_trailship/kafka/ct/0/00000000000000000001.json"]);
        let _ = std::fs::remove_dir_all(&root);
    }
}
