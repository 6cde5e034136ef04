//! onramp: an in-app onboarding and milestone SDK.
//!
//! # Layout
//!
//! - [`core`]: pure Rust, no browser APIs. The wire format shared with the collector, the JSON
//!   reader/writer, ids, the client's event queue and the funnel step-matcher. Tested natively.
//! - `web` (wasm32 only): the thin browser layer. It exports `init`, `identify`, `track` and
//!   `reset` to JavaScript, reads the clock, storage and network, and hands everything that
//!   decides to [`core`].
#![cfg_attr(target_arch = "wasm32", deny(clippy::unwrap_used, clippy::expect_used))]

pub mod core;

#[cfg(target_arch = "wasm32")]
mod web;
