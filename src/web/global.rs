//! Page-wide state of the browser layer. `thread_local!` is std's, and the lean tracker is
//! `no_std` (src/lib.rs); `unsafe` is forbidden, so the state lives in a spin lock, which is
//! `Sync` for any `Send` value (a `JsValue` is `Send` in a wasm without threads). The page is
//! single-threaded: the lock is only ever found taken when a call re-enters while the state is in
//! use, which [`Global::with`] treats as `RefCell::borrow_mut` did (a trap: there is no unwinding).

pub struct Global<T>(spin::Mutex<T>);

impl<T> Global<T> {
    pub const fn new(value: T) -> Global<T> {
        Global(spin::Mutex::new(value))
    }

    /// Runs `f` with the value; re-entered (a bug), traps instead of spinning forever.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        match self.0.try_lock() {
            Some(mut value) => f(&mut value),
            None => ::core::arch::wasm32::unreachable(),
        }
    }

    /// Runs `f` with the value, or answers `None` if it is in use further up the stack.
    pub fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.0.try_lock().map(|mut value| f(&mut value))
    }
}
