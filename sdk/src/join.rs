//! Waiting for a thread to end, with a deadline. A thread stuck in an audio or camera driver
//! must never hang the game that stops it: after the deadline the thread is left to end by
//! itself (detached), and a warning names it.

use std::thread::JoinHandle;
use std::time::Duration;

use web_time::Instant;

/// How long stopping a part (voice, video, a device, the session) waits for one of its
/// threads. They check their stop flag at least every few hundred milliseconds, so a thread
/// still running after this is stuck (most likely inside a driver).
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(3);

/// Waits until `thread` has ended, at most `within`. `true` if it ended (and was joined);
/// `false` if it was still running then: it is left running and a warning names it.
pub(crate) fn join_within(thread: JoinHandle<()>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            tracing::warn!(
                thread = thread.thread().name().unwrap_or("unnamed"),
                waited = ?within,
                "a thread did not stop in time; leaving it to end by itself"
            );
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // It has finished: this join does not block. A panic in it is not ours to re-raise.
    let _ = thread.join();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_ends_is_joined() {
        let thread = std::thread::spawn(|| {});
        assert!(join_within(thread, Duration::from_secs(10)));
    }

    #[test]
    fn a_stuck_thread_is_left_behind_after_the_deadline() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        // It cannot end before the release below, so the wait must give up.
        let thread = std::thread::spawn(move || {
            let _ = wait.recv();
        });
        let started = Instant::now();
        assert!(!join_within(thread, Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        let _ = release.send(());
    }
}
