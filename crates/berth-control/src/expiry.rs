//! The expiry timer queue: one task sleeps until the earliest deadline and reports each sandbox
//! whose deadline has passed. Renewals move deadlines; ended sandboxes are cancelled.

use std::collections::{BTreeSet, HashMap};

use berth_core::SandboxId;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

enum Command {
    Schedule(SandboxId, DateTime<Utc>),
    Cancel(SandboxId),
}

/// Handle to the timer task. Cheap to clone.
#[derive(Clone)]
pub struct ExpiryTimers {
    commands: mpsc::UnboundedSender<Command>,
}

impl ExpiryTimers {
    /// Starts the timer task; expired ids arrive on the returned receiver.
    pub fn start() -> (ExpiryTimers, mpsc::UnboundedReceiver<SandboxId>) {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (expired_tx, expired_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(command_rx, expired_tx));
        (ExpiryTimers { commands }, expired_rx)
    }

    /// Sets (or moves) the sandbox's deadline.
    pub fn schedule(&self, id: SandboxId, deadline: DateTime<Utc>) {
        // The task only stops when the server does; a send after that has nobody to tell.
        let _ = self.commands.send(Command::Schedule(id, deadline));
    }

    pub fn cancel(&self, id: SandboxId) {
        let _ = self.commands.send(Command::Cancel(id));
    }
}

async fn run(mut commands: mpsc::UnboundedReceiver<Command>, expired: mpsc::UnboundedSender<SandboxId>) {
    let mut queue: BTreeSet<(DateTime<Utc>, SandboxId)> = BTreeSet::new();
    let mut deadlines: HashMap<SandboxId, DateTime<Utc>> = HashMap::new();
    loop {
        let now = Utc::now();
        while let Some((deadline, id)) = queue.first().cloned() {
            if deadline > now {
                break;
            }
            queue.pop_first();
            deadlines.remove(&id);
            if expired.send(id).is_err() {
                return;
            }
        }
        let sleep_for = queue
            .first()
            .map(|(deadline, _)| (*deadline - now).to_std().unwrap_or_default())
            .unwrap_or(std::time::Duration::from_secs(3600));
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Schedule(id, deadline)) => {
                    if let Some(previous) = deadlines.insert(id.clone(), deadline) {
                        queue.remove(&(previous, id.clone()));
                    }
                    queue.insert((deadline, id));
                }
                Some(Command::Cancel(id)) => {
                    if let Some(previous) = deadlines.remove(&id) {
                        queue.remove(&(previous, id));
                    }
                }
            },
            () = tokio::time::sleep(sleep_for) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn fires_in_deadline_order_and_honours_moves_and_cancels() {
        let (timers, mut expired) = ExpiryTimers::start();
        let now = Utc::now();
        let [a, b, c] = [SandboxId::generate(), SandboxId::generate(), SandboxId::generate()];
        timers.schedule(a.clone(), now + chrono::Duration::milliseconds(300));
        timers.schedule(b.clone(), now + chrono::Duration::milliseconds(100));
        timers.schedule(c.clone(), now + chrono::Duration::milliseconds(200));
        timers.cancel(c.clone());
        // Moving `b` later puts it after `a`.
        timers.schedule(b.clone(), now + chrono::Duration::milliseconds(400));

        let first = tokio::time::timeout(Duration::from_secs(2), expired.recv())
            .await
            .unwrap()
            .unwrap();
        let fired_at = Utc::now();
        let second = tokio::time::timeout(Duration::from_secs(2), expired.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first, second), (a, b));
        assert!(fired_at >= now + chrono::Duration::milliseconds(300), "fired early");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), expired.recv())
                .await
                .is_err(),
            "cancelled timer fired"
        );
    }
}
