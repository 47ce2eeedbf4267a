//! The namespaces every namespaced create checks, kept in memory from the store's namespace
//! events, as upstream's NamespaceLifecycle admission keeps them in an informer: a namespace the
//! cache has not seen yet (created a moment ago) is read from the store instead.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::store::{EventType, Store, StoreError};

/// What the cache knows of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Active,
    Terminating,
}

/// Namespace name to phase, following the store.
#[derive(Clone, Default)]
pub struct Namespaces {
    known: Arc<RwLock<HashMap<String, Phase>>>,
}

fn phase_of(namespace: &serde_json::Value) -> Phase {
    if namespace["metadata"].get("deletionTimestamp").is_some() {
        Phase::Terminating
    } else {
        Phase::Active
    }
}

impl Namespaces {
    /// Starts following the store's namespaces.
    pub fn follow(store: Store) -> Self {
        let namespaces = Namespaces::default();
        let known = namespaces.known.clone();
        tokio::spawn(async move {
            loop {
                match follow_once(&store, &known).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "namespace cache restarts from a list");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        namespaces
    }

    /// The phase of `name` if the cache has seen it; None means "ask the store".
    pub fn phase(&self, name: &str) -> Option<Phase> {
        self.known
            .read()
            .expect("namespace cache lock")
            .get(name)
            .copied()
    }
}

/// Lists the namespaces, then applies their events until the store ends (Ok) or the watch
/// fails (Err: the caller lists again).
async fn follow_once(
    store: &Store,
    known: &RwLock<HashMap<String, Phase>>,
) -> Result<(), StoreError> {
    let page = store.list("namespaces", None, None, None).await?;
    *known.write().expect("namespace cache lock") = page
        .items
        .iter()
        .filter_map(|o| {
            let name = o.value["metadata"]["name"].as_str()?;
            Some((name.to_string(), phase_of(&o.value)))
        })
        .collect();
    let mut watch = store
        .watch(Some("namespaces".into()), page.revision)
        .await?;
    while let Some(event) = watch.next().await {
        let event = event?;
        let mut known = known.write().expect("namespace cache lock");
        match event.event_type {
            EventType::Deleted => known.remove(&event.key.name),
            _ => known.insert(event.key.name.clone(), phase_of(&event.object)),
        };
    }
    Ok(())
}
