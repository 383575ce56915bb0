//! The page's JavaScript values, in our terms.

use js_sys::Reflect;
use wasm_bindgen::JsValue;

/// A JavaScript error as text.
pub(crate) fn describe(value: &JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            Reflect::get(value, &JsValue::from_str("message"))
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{value:?}"))
}
