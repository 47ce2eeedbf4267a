//! Images: the node's store of Wasm components ([`store`]) and the OCI registries they come
//! from and go to ([`registry`]).

pub mod credentials;
pub mod registry;
mod store;

pub use store::{Image, ImageError, ImageStore, normalize};
