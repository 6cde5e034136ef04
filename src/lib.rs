//! onramp: an in-app onboarding and milestone SDK.
//!
//! # Layout
//!
//! - [`core`]: pure Rust, no browser APIs. The SDK as one state machine
//!   ([`core::machine`]: `handle(now, Input) -> Vec<Effect>`), the wire format and the event
//!   vocabulary shared with the collector, JSON values (text is read by the platform: the
//!   browser's `JSON.parse`, serde_json natively), ids, the client's event queue, delivery, the
//!   plan, the milestone engine and its versioned persisted state, and the funnel step-matcher.
//!   Tested natively.
//! - `web` (wasm32 only): the thin browser layer. It exports `init`, `identify`, `track`,
//!   `group`, `complete`, `reset` and `flush` to JavaScript, turns them and the page's events
//!   into the machine's inputs, and carries out its effects (network, timers, DOM, console).
#![cfg_attr(target_arch = "wasm32", deny(clippy::unwrap_used, clippy::expect_used))]
// The lean tracker (the wasm without `guide`) leaves std out: std's panic handler (the message
// formatting behind every bounds check and `RefCell` borrow, `core::fmt`, source file names) and
// its thread locals were 7 525 B raw, 3 722 B gzip, 3 253 B brotli of the tracker's wasm
// (82 424 → 74 899 B raw, `cargo xtask build`), with gloo's listener and timer (which need std)
// replaced by src/web/owned.rs. The code it compiles names `alloc` and `core`, the same items
// std re-exports, so every build reads the same.
#![cfg_attr(all(target_arch = "wasm32", not(feature = "std")), no_std)]

extern crate alloc;

pub mod core;

// The core's tests also run in a real browser: the engine must behave the same compiled to wasm.
#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[cfg(target_arch = "wasm32")]
mod web;

/// Without std a panic (a bug: an index out of bounds, a re-entered borrow) traps, as std's
/// handler did with `panic = "abort"`, minus its message, which nothing could read.
#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[panic_handler]
fn panic(_: &::core::panic::PanicInfo) -> ! {
    ::core::arch::wasm32::unreachable()
}

// The SDK's allocator, in every bundle (see Cargo.toml for why and what it saves). Locked, because
// a global allocator must be `Sync`; the page is single-threaded, so the lock is never contended.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> = lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

// Natively (the collector, `plan check`, tests) JSON text is serde_json's, so the core needs its
// `serde` feature there; it is on by default (through `guide`) and the collector names it.
#[cfg(all(not(target_arch = "wasm32"), not(feature = "serde")))]
compile_error!("natively the core reads JSON with serde_json: build it with the `serde` feature (on by default)");
