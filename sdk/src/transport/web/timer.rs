//! Time in the browser: sleeping on the page's `setTimeout` (through the global object, so
//! it works in a worker too), a bound on any wait, and the shell's [`Alarm`] for a deadline
//! that moves.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;
use wasm_bindgen_futures::JsFuture;
use web_time::Instant;

/// The page's timer function `name` (`setTimeout`, `clearTimeout`), if it has one.
fn timer_function(name: &str) -> Option<Function> {
    Reflect::get(&js_sys::global(), &JsValue::from_str(name))
        .ok()
        .and_then(|f| wasm_bindgen::JsCast::dyn_into::<Function>(f).ok())
}

/// A `setTimeout` delay for `duration`: whole milliseconds, rounded up so that it never
/// rings before the deadline (which would only cost a turn of the loop and a new timer).
fn delay_ms(duration: Duration) -> i32 {
    let micros = duration.as_micros();
    i32::try_from(micros.div_ceil(1000)).unwrap_or(i32::MAX)
}

/// Resolves after `duration` (at the page's timer resolution; a hidden tab's timers may run
/// late, which the core tolerates: it acts on the time it is given).
pub(crate) async fn sleep(duration: Duration) {
    let ms = delay_ms(duration);
    let promise = Promise::new(&mut |resolve, _reject| {
        match timer_function("setTimeout") {
            Some(f) => {
                let _ = f.call2(&js_sys::global(), &resolve, &JsValue::from(ms));
            }
            // No timers at all (not a browser): resolve at once rather than hang.
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// `work`'s result, or `None` if it took longer than `limit`.
pub(crate) async fn within<T>(limit: Duration, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        done = work => Some(done),
        () = sleep(limit) => None,
    }
}

/// One page timer for a loop whose deadline moves with every turn (the shell's: the
/// core's next deadline). [`sleep`] in such a loop would set a new `setTimeout` per turn
/// and leave the old ones to ring into dropped futures later — JavaScript-to-wasm calls
/// and promise jobs for nothing, on the path of every message. The alarm is set again
/// only when the deadline comes earlier than the one it is set for; a later deadline lets
/// it ring early once, and the loop sets it for the new one then. Dropping it clears it.
pub(crate) struct Alarm {
    state: Rc<RefCell<Ring>>,
    /// What the page calls when the timer rings (kept alive while it is set).
    on_ring: Closure<dyn FnMut()>,
    /// The page's `setTimeout` and `clearTimeout` (none outside a browser: then the alarm
    /// rings at once, rather than never).
    timers: Option<(Function, Function)>,
}

/// The alarm's state, shared with the page's callback.
#[derive(Default)]
struct Ring {
    /// The deadline the page's timer is set for, and its handle.
    set: Option<(Instant, JsValue)>,
    /// It rang and the loop has not served it yet.
    rang: bool,
    /// The loop's task, waiting for it.
    waker: Option<Waker>,
}

impl Ring {
    /// The timer rang: the loop's task is woken (after the state is let go).
    fn ring(state: &RefCell<Ring>) {
        let waker = match state.try_borrow_mut() {
            Ok(mut ring) => {
                ring.set = None;
                ring.rang = true;
                ring.waker.take()
            }
            // Only the loop borrows it, and never across a wait: not reachable from the
            // page's event loop, and then the loop is running anyway.
            Err(_) => None,
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Alarm {
    pub(crate) fn new() -> Self {
        let state = Rc::new(RefCell::new(Ring::default()));
        let shared = Rc::clone(&state);
        let on_ring = Closure::<dyn FnMut()>::new(move || Ring::ring(&shared));
        let timers = timer_function("setTimeout").zip(timer_function("clearTimeout"));
        Self {
            state,
            on_ring,
            timers,
        }
    }

    /// Makes the alarm ring at `at` or earlier (`now` is the time to count from).
    pub(crate) fn set(&mut self, at: Instant, now: Instant) {
        let Ok(mut ring) = self.state.try_borrow_mut() else {
            return;
        };
        if ring.rang || ring.set.as_ref().is_some_and(|(set, _)| *set <= at) {
            return;
        }
        let Some((set_timeout, clear_timeout)) = &self.timers else {
            ring.rang = true;
            return;
        };
        let global = js_sys::global();
        if let Some((_, handle)) = ring.set.take() {
            let _ = clear_timeout.call1(&global, &handle);
        }
        let ms = delay_ms(at.saturating_duration_since(now));
        match set_timeout.call2(&global, self.on_ring.as_ref(), &JsValue::from(ms)) {
            Ok(handle) => ring.set = Some((at, handle)),
            // A page that refuses timers: ring at once rather than never.
            Err(_) => ring.rang = true,
        }
    }

    /// Resolves when the alarm rings (at once if it rang since the last time).
    pub(crate) async fn rung(&self) {
        poll_fn(|cx| {
            let Ok(mut ring) = self.state.try_borrow_mut() else {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            };
            if ring.rang {
                ring.rang = false;
                Poll::Ready(())
            } else {
                ring.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        let handle = self
            .state
            .try_borrow_mut()
            .ok()
            .and_then(|mut ring| ring.set.take());
        if let (Some((_, handle)), Some((_, clear_timeout))) = (handle, &self.timers) {
            let _ = clear_timeout.call1(&js_sys::global(), &handle);
        }
    }
}
