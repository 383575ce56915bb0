//! Sending threads reused from one voice to the next.
//!
//! Noise suppression (nnnoiseless) computes its FFTs through easyfft, which caches FFT plans
//! per thread in a cache that never frees them (`Box::leak`): every thread that ever denoised
//! keeps about 21 KiB after it ends. A game that starts a voice per match would leak that
//! much a match. So a voice's sending work runs on a thread taken from here: when the work
//! ends, the thread waits for the next voice's work (up to [`IDLE_FOR`]) and its cached plans
//! serve that one too. At most as many threads are kept as voices ever sent at once.

use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

type Work = Box<dyn FnOnce() + Send + 'static>;

/// How long a finished thread waits for more work before it ends.
const IDLE_FOR: Duration = Duration::from_secs(60);

/// Threads waiting for work: the way to hand each one its next piece.
static IDLE: Mutex<Vec<Sender<Work>>> = Mutex::new(Vec::new());

/// Work handed to a reused thread; [`Running::join`] waits for it to finish.
pub(crate) struct Running {
    done: Receiver<()>,
}

/// How long [`Running::join`] waits for the work to return.
pub(crate) const JOIN_WAIT: Duration = Duration::from_secs(5);

impl Running {
    /// Waits until the work has returned (or its thread has died), at most [`JOIN_WAIT`];
    /// `false` if it was still running then.
    pub(crate) fn join(self) -> bool {
        // Sent when the work returns; disconnected if it panicked.
        !matches!(
            self.done.recv_timeout(JOIN_WAIT),
            Err(RecvTimeoutError::Timeout)
        )
    }
}

/// Runs `work` on an idle thread named `name` if there is one, on a new one otherwise.
/// Fails only if a new thread was needed and the system would not start one.
pub(crate) fn run(name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<Running> {
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let mut work: Work = Box::new(move || {
        work();
        let _ = done_tx.send(());
    });
    loop {
        let idle = IDLE.lock().ok().and_then(|mut idle| idle.pop());
        let Some(thread) = idle else { break };
        match thread.send(work) {
            Ok(()) => return Ok(Running { done }),
            // That thread ended meanwhile: try the next.
            Err(returned) => work = returned.0,
        }
    }
    let (tx, rx) = crossbeam_channel::unbounded::<Work>();
    // Cannot fail: `rx` is alive here.
    let _ = tx.send(work);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || serve(&tx, &rx))?;
    Ok(Running { done })
}

/// A reused thread's life: work, then wait to be handed more, until idle too long.
fn serve(me: &Sender<Work>, rx: &Receiver<Work>) {
    loop {
        let work = match rx.recv_timeout(IDLE_FOR) {
            Ok(work) => work,
            Err(RecvTimeoutError::Timeout) => {
                if let Ok(mut idle) = IDLE.lock() {
                    idle.retain(|s| !s.same_channel(me));
                }
                // Work handed over just before we left the list is still ours to do.
                match rx.try_recv() {
                    Ok(work) => work,
                    Err(_) => return,
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        work();
        if let Ok(mut idle) = IDLE.lock() {
            idle.push(me.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_of(name: &str) -> std::thread::ThreadId {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let running = run(name, move || {
            let _ = tx.send(std::thread::current().id());
        })
        .unwrap();
        assert!(running.join(), "work did not return in time");
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn work_after_work_runs_on_threads_already_made() {
        // Twenty voices one after another. Without reuse that is twenty threads; with it,
        // a handful at most (tests running beside this one share the pool).
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            seen.insert(thread_of("sl-test-reuse"));
            // The thread puts itself back just after the work returns.
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            seen.len() <= 5,
            "{} threads for 20 works one after another",
            seen.len()
        );
    }

    #[test]
    fn work_at_once_gets_a_thread_each_and_join_waits_for_it() {
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
        let go_rx2 = go_rx.clone();
        let a = run("sl-test-reuse", move || {
            let _ = go_rx.recv_timeout(Duration::from_secs(5));
        })
        .unwrap();
        let b = run("sl-test-reuse", move || {
            let _ = go_rx2.recv_timeout(Duration::from_secs(5));
        })
        .unwrap();
        // Both are waiting at once, so they run on two threads; release both.
        go_tx.send_timeout((), Duration::from_secs(5)).unwrap();
        go_tx.send_timeout((), Duration::from_secs(5)).unwrap();
        assert!(a.join() && b.join(), "work did not return in time");
    }
}
