//! The browser voice's Web Audio graph: the page's audio context and the mix, each peer's
//! voice through its left and right gains into it, level analysers, and what starts the
//! audio at the player's first gesture.

use js_sys::Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AnalyserNode, AudioContext, AudioContextOptions, AudioContextState, ChannelMergerNode,
    GainNode, HtmlAudioElement, MediaStream, MediaStreamAudioSourceNode, MediaStreamTrack,
};
use web_time::Instant;

use crate::transport::web::describe;

/// Samples the analysers look at (21 ms at 48 kHz).
pub(super) const WINDOW: usize = 1024;

/// The page's audio: a 48 kHz context and the mix (to the speakers when `play`).
pub(super) fn audio_graph(play: bool) -> Result<(AudioContext, GainNode), String> {
    let options = AudioContextOptions::new();
    options.set_sample_rate(48_000.0);
    let ctx = AudioContext::new_with_context_options(&options)
        .map_err(|e| format!("the page has no Web Audio: {}", describe(&e)))?;
    let mix = ctx
        .create_gain()
        .map_err(|e| format!("Web Audio: {}", describe(&e)))?;
    if play {
        mix.connect_with_audio_node(&ctx.destination())
            .map_err(|e| format!("Web Audio: {}", describe(&e)))?;
    }
    Ok((ctx, mix))
}

/// Starts `ctx` if the browser holds it back.
pub(super) fn resume(ctx: &AudioContext) {
    if ctx.state() == AudioContextState::Suspended
        && let Ok(promise) = ctx.resume()
    {
        wasm_bindgen_futures::spawn_local(async move {
            let _ = JsFuture::from(promise).await;
        });
    }
}

/// One peer's voice being played.
pub(super) struct Heard {
    pub(super) serial: u64,
    pub(super) element: HtmlAudioElement,
    pub(super) source: MediaStreamAudioSourceNode,
    pub(super) left: GainNode,
    pub(super) right: GainNode,
    pub(super) merger: ChannelMergerNode,
    pub(super) analyser: AnalyserNode,
    pub(super) speaking: bool,
    pub(super) loud_at: Option<Instant>,
}

impl Heard {
    /// Stops playing it.
    pub(super) fn release(&self) {
        let _ = self.source.disconnect();
        let _ = self.merger.disconnect();
        let _ = self.element.pause();
        self.element.set_src_object(None);
    }
}

/// Plays `track` (the peer's track `serial`) into `mix` through its own gains.
pub(super) fn hear(
    ctx: &AudioContext,
    mix: &GainNode,
    (track, serial): (&MediaStreamTrack, u64),
) -> Result<Heard, JsValue> {
    let stream = MediaStream::new_with_tracks(&Array::of1(track))?;
    // Chrome feeds a remote track to Web Audio only while a media element plays it.
    let element = HtmlAudioElement::new()?;
    element.set_muted(true);
    element.set_src_object(Some(&stream));
    if let Ok(promise) = element.play() {
        wasm_bindgen_futures::spawn_local(async move {
            let _ = JsFuture::from(promise).await;
        });
    }
    let source = ctx.create_media_stream_source(&stream)?;
    let left = ctx.create_gain()?;
    let right = ctx.create_gain()?;
    let merger = ctx.create_channel_merger_with_number_of_inputs(2)?;
    let analyser = ctx.create_analyser()?;
    analyser.set_fft_size(WINDOW as u32);
    source.connect_with_audio_node(&left)?;
    source.connect_with_audio_node(&right)?;
    source.connect_with_audio_node(&analyser)?;
    // Each merger input takes one channel: the voice, down-mixed to mono.
    left.connect_with_audio_node_and_output_and_input(&merger, 0, 0)?;
    right.connect_with_audio_node_and_output_and_input(&merger, 0, 1)?;
    merger.connect_with_audio_node(mix)?;
    Ok(Heard {
        serial,
        element,
        source,
        left,
        right,
        merger,
        analyser,
        speaking: false,
        loud_at: None,
    })
}

/// An analyser listening to `stream`.
pub(super) fn analyser_of(
    ctx: &AudioContext,
    stream: &MediaStream,
) -> Result<AnalyserNode, JsValue> {
    let source = ctx.create_media_stream_source(stream)?;
    let analyser = ctx.create_analyser()?;
    analyser.set_fft_size(WINDOW as u32);
    source.connect_with_audio_node(&analyser)?;
    Ok(analyser)
}

/// The level (RMS) of what `analyser` hears now.
pub(super) fn level(analyser: &AnalyserNode, scratch: &mut [f32]) -> f32 {
    analyser.get_float_time_domain_data(scratch);
    let n = scratch.len().max(1) as f32;
    (scratch.iter().map(|s| s * s).sum::<f32>() / n).sqrt()
}

/// What starts the page's audio at the player's first gesture.
pub(super) struct Gesture {
    resume: wasm_bindgen::closure::Closure<dyn FnMut(JsValue)>,
}

/// The page events that count as the player's gesture for starting audio.
const GESTURES: [&str; 3] = ["pointerdown", "keydown", "touchend"];

impl Gesture {
    /// Resumes `ctx` at the page's next gesture.
    pub(super) fn listen(ctx: &AudioContext) -> Option<Self> {
        let window = web_sys::window()?;
        let ctx = ctx.clone();
        let resume =
            wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
                resume(&ctx)
            });
        for event in GESTURES {
            let _ = window.add_event_listener_with_callback(event, resume.as_ref().unchecked_ref());
        }
        Some(Self { resume })
    }
}

impl Drop for Gesture {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            for event in GESTURES {
                let _ = window.remove_event_listener_with_callback(
                    event,
                    self.resume.as_ref().unchecked_ref(),
                );
            }
        }
    }
}
