//! One module per `skiff` command.

pub mod apply;
pub mod cordon;
pub mod create;
pub mod delete;
pub mod describe;
pub mod get;
pub mod image;
pub mod label;
pub mod node;
pub mod pull;
pub mod push;
pub mod rollout;
pub mod scale;
pub mod server;
pub mod set;
