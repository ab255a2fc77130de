//! Timing helpers of every benchmark: how long a future takes, and a berth call and its raw
//! engine counterpart run one after the other in alternating order.

use std::future::Future;
use std::time::{Duration, Instant};

/// Runs both, berth first on even rounds and raw first on odd ones, so drift hits both alike.
pub async fn interleaved<A: Future, B: Future>(round: usize, berth: A, raw: B) -> (A::Output, B::Output) {
    if round.is_multiple_of(2) {
        let berth = berth.await;
        (berth, raw.await)
    } else {
        let raw = raw.await;
        (berth.await, raw)
    }
}

/// The output of `future` and how long it took.
pub async fn timed<F: Future>(future: F) -> (Duration, F::Output) {
    let start = Instant::now();
    let output = future.await;
    (start.elapsed(), output)
}
