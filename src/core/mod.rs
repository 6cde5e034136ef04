//! The pure core: everything that decides, with no web-sys and no sockets.
//!
//! Compiled into the wasm SDK and natively into the collector, and tested with plain
//! `cargo test`. The browser layer ([`crate::web`]) and the collector implement the traits that
//! connect it to the outside world.

pub mod client;
pub mod delivery;
pub mod engine;
pub mod funnel;
pub mod ids;
pub mod json;
pub mod markup;
pub mod num;
pub mod placement;
pub mod plan;
pub mod preview;
pub mod selector;
pub mod storage;
pub mod time;
pub mod tips;
pub mod vecmap;
pub mod wire;
