//! A peer's decoded samples waiting to be mixed, in memory allocated once (the renderer
//! must not allocate).

/// Samples a peer's queue holds at most: the longest silence the jitter buffer asks for
/// (its 200 ms bound, at 48 kHz) and a few frames, twice over for compaction.
const PCM_CAPACITY: usize = 32_768;

/// Decoded samples waiting to be mixed: a vector read from the front, compacted now and
/// then (cheaper than a deque sample by sample). Allocated once: what would not fit is
/// dropped (it cannot happen within the jitter buffer's bounds).
#[derive(Debug)]
pub(crate) struct SampleQueue {
    data: Vec<f32>,
    start: usize,
}

impl Default for SampleQueue {
    fn default() -> Self {
        Self {
            data: Vec::with_capacity(PCM_CAPACITY),
            start: 0,
        }
    }
}

impl SampleQueue {
    /// Samples waiting.
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.start
    }

    /// Forgets every sample.
    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.start = 0;
    }

    /// Makes room for `n` more samples if it can; how many fit.
    fn room_for(&mut self, n: usize) -> usize {
        if self.start > 0
            && (self.start >= self.data.len() / 2 || self.data.len() + n > self.data.capacity())
        {
            self.data.drain(..self.start);
            self.start = 0;
        }
        n.min(self.data.capacity() - self.data.len())
    }

    /// Appends `samples` (what does not fit is dropped).
    pub(crate) fn push(&mut self, samples: &[f32]) {
        let n = self.room_for(samples.len());
        self.data.extend_from_slice(samples.get(..n).unwrap_or(&[]));
    }

    /// Appends `n` samples of silence.
    pub(crate) fn push_zeros(&mut self, n: usize) {
        let n = self.room_for(n);
        self.data.resize(self.data.len() + n, 0.0);
    }

    /// Moves up to `n` samples to `out` (the renderer's has room for a whole render).
    pub(crate) fn take_into(&mut self, n: usize, out: &mut Vec<f32>) {
        let end = (self.start + n).min(self.data.len());
        out.extend_from_slice(self.data.get(self.start..end).unwrap_or(&[]));
        self.start = end;
        if self.start == self.data.len() {
            self.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_queue_is_first_in_first_out() {
        let mut q = SampleQueue::default();
        q.push(&[1.0, 2.0, 3.0]);
        q.push_zeros(2);
        let mut out = Vec::new();
        q.take_into(2, &mut out);
        q.push(&[4.0]);
        q.take_into(10, &mut out);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 0.0, 0.0, 4.0]);
        assert_eq!(q.len(), 0);
    }
}
