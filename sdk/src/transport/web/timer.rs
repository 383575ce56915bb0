//! Time in the browser: sleeping on the page's `setTimeout` (through the global object, so
//! it works in a worker too), and a bound on any wait.

use std::future::Future;
use std::time::Duration;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

/// Resolves after `duration` (at the page's timer resolution; a hidden tab's timers may run
/// late, which the core tolerates: it acts on the time it is given).
pub(crate) async fn sleep(duration: Duration) {
    let ms = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    let promise = Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        let set_timeout = Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| wasm_bindgen::JsCast::dyn_into::<Function>(f).ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&global, &resolve, &JsValue::from(ms));
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
