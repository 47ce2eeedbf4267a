//! Skiff's control plane: the Kubernetes-compatible API server over an embedded store.

pub mod registry;
