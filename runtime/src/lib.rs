//! Skiff's node agent: registers a Node, watches the pods bound to it and runs their containers,
//! which are WebAssembly components, under wasmtime.
//!
//! - [`image`]: OCI pulls and pushes, and the node's image store (`skiff image import|ls|rm`);
//! - [`cpu`]: CPU limits by time slicing;
//! - [`endpoint`]: the node's HTTPS endpoint the API server reaches for logs;
//! - [`engine`]: the wasmtime engine and running a component as a container;
//! - [`events`]: the events the node records, written in the background;
//! - [`eviction`]: node-pressure eviction and the pressure conditions;
//! - [`logs`]: container logs in the kubelet's CRI format;
//! - [`net`]: the pod network: pod addresses and the socket layer;
//! - [`node`]: the Node object and its Lease;
//! - [`pods`]: one pod's lifecycle;
//! - [`probes`]: startup, liveness and readiness probes;
//! - [`storage`]: persistent volumes provisioned from the node's disk;
//! - [`usage`]: CPU and memory the node and its containers use, for `kubectl top`;
//! - [`volumes`]: a pod's volumes as preopened directories;
//! - [`agent`]: all of it together.

pub mod agent;
pub mod cpu;
pub mod endpoint;
pub mod engine;
pub mod events;
pub mod eviction;
pub mod image;
pub mod logs;
pub mod net;
pub mod node;
pub mod pods;
pub mod probes;
pub mod storage;
pub mod usage;
pub mod volumes;
