//! Skiff's control plane: the Kubernetes-compatible API server ([`api`]) over an embedded,
//! revisioned store ([`store`]), with the cluster's certificates ([`pki`]), authentication
//! ([`auth`]) and the served kinds ([`registry`], [`schema`]). [`server::run`] ties them together.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod controllers;
pub mod join;
pub mod pki;
pub mod registry;
pub mod schema;
pub mod server;
pub mod store;
