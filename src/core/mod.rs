//! The pure core: everything that decides, with no web-sys and no sockets.
//!
//! Compiled into the wasm SDK and natively into the collector, and tested with plain
//! `cargo test`. The browser layer ([`crate::web`]) and the collector implement the traits that
//! connect it to the outside world.

// The one fatigue budget every guidance surface is charged to (guide builds).
#[cfg(feature = "guide")]
pub mod budget;
pub mod client;
pub mod delivery;
// The milestone engine and tip scheduling are the guide's: the lean tracker leaves them out.
#[cfg(feature = "guide")]
pub mod engine;
#[cfg(not(all(target_arch = "wasm32", not(feature = "guide"))))] // not in the lean tracker
pub mod funnel;
#[cfg(not(all(target_arch = "wasm32", not(feature = "guide"))))] // not in the lean tracker
pub mod holdout;
// Customer health: read by the collector only, never shipped to browsers.
#[cfg(not(target_arch = "wasm32"))]
pub mod health;
pub mod ids;
pub mod json;
#[cfg(feature = "serde")]
pub mod json_serde;
pub mod machine;
pub mod markup;
pub mod num;
#[cfg(not(all(target_arch = "wasm32", not(feature = "guide"))))] // not in the lean tracker
pub mod placement;
// Growth prompts at milestones: the guide's, like tips.
#[cfg(feature = "guide")]
pub mod prompts;
#[cfg(feature = "guide")]
pub mod persisted;
pub mod plan;
// The preview panel's words (guide builds; the panel itself ships only in the preview bundle).
#[cfg(feature = "guide")]
pub mod preview;
#[cfg(not(all(target_arch = "wasm32", not(feature = "guide"))))] // not in the lean tracker
pub mod selector;
pub mod storage;
pub mod substr;
#[cfg(feature = "guide")]
pub mod surveys;
pub mod time;
#[cfg(feature = "guide")]
pub mod tips;
pub mod vecmap;
pub mod vocab;
pub mod wire;
