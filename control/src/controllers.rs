//! The control loops, each in its own file, all started from [`start`] (with the scheduler). They are clients of the
//! API like any operator (a kube `Client` over the in-process router), so each is also correct
//! against a real cluster. `skiff server --disable NAME` skips one.

pub mod garbage_collector;
pub mod namespace;
pub mod node_ipam;

use kube::Client;
use kube::core::ApiResource;

use crate::registry::Resource;

/// Every controller's name, as `--disable` takes it.
pub const NAMES: &[&str] = &["namespace", "garbage-collector", "node-ipam", "scheduler"];

/// Starts every controller not in `disabled`; they run until the process ends.
pub fn start(client: Client, disabled: &[String]) {
    let enabled = |name: &str| !disabled.iter().any(|d| d == name);
    if enabled("namespace") {
        tokio::spawn(namespace::run(client.clone()));
    }
    if enabled("node-ipam") {
        tokio::spawn(node_ipam::run(client.clone()));
    }
    if enabled("scheduler") {
        tokio::spawn(crate::scheduler::run(client.clone()));
    }
    if enabled("garbage-collector") {
        tokio::spawn(garbage_collector::run(client));
    }
}

/// The kube-rs description of a served resource, for dynamic clients.
pub fn api_resource(r: &Resource) -> ApiResource {
    ApiResource {
        group: r.group.to_string(),
        version: r.version.to_string(),
        api_version: r.api_version(),
        kind: r.kind.to_string(),
        plural: r.plural.to_string(),
    }
}
