//! Skiff's control plane: the Kubernetes-compatible API server ([`api`]) over an embedded,
//! revisioned store ([`store`]), with the cluster's certificates ([`pki`]), authentication
//! ([`auth`]), the served kinds ([`registry`], [`schema`]), the [`scheduler`] and the
//! [`controllers`]. [`server::run`] ties them together.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod controllers;
pub mod join;
pub mod pki;
pub mod registry;
pub mod scheduler;
pub mod schema;
pub mod server;
pub mod store;
