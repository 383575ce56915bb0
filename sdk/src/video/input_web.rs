//! What video sends in the browser.

/// What video sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoInput {
    /// Nothing (receive only).
    None,
    /// The page's camera (`getUserMedia`; the browser asks the player once).
    Camera,
    /// The synthetic test pattern ([`super::TestPattern`], drawn on a canvas the browser
    /// captures): video without a camera, for demos and tests.
    TestPattern,
}
