//! Streamed request bodies (uploads, build contexts) counted as they pass: cut past the size
//! limit or a wrong `Content-Length`, with the reason kept for the answer.

use std::io;
use std::sync::{Arc, Mutex};

use berth_runtime::ByteStream;
use futures::StreamExt;

/// Why a request body stopped, recorded by [`guard_body`] so the answer can say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFault {
    TooLarge(u64),
    Length { announced: u64, got: u64 },
    Read(String),
}

pub type FaultSlot = Arc<Mutex<Option<BodyFault>>>;

fn record(slot: &FaultSlot, fault: BodyFault) -> io::Error {
    let error = io::Error::other(format!("{fault:?}"));
    let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.get_or_insert(fault);
    error
}

pub fn fault(slot: &FaultSlot) -> Option<BodyFault> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

/// Passes a request body on while counting it: fails (and records why) past `limit` bytes, on a
/// read error, or — with `exact` — when it does not carry exactly that many bytes.
pub fn guard_body(body: ByteStream, limit: u64, exact: Option<u64>, slot: FaultSlot) -> ByteStream {
    let seen = Arc::new(Mutex::new(0u64));
    let counted = {
        let seen = Arc::clone(&seen);
        let slot = Arc::clone(&slot);
        body.map(move |item| {
            let bytes = item.map_err(|error| record(&slot, BodyFault::Read(error.to_string())))?;
            let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *seen += bytes.len() as u64;
            if *seen > limit {
                return Err(record(&slot, BodyFault::TooLarge(limit)));
            }
            if let Some(announced) = exact
                && *seen > announced
            {
                return Err(record(&slot, BodyFault::Length { announced, got: *seen }));
            }
            Ok(bytes)
        })
    };
    let end_check = futures::stream::once(async move {
        let got = *seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match exact {
            Some(announced) if got != announced => Some(Err(record(&slot, BodyFault::Length { announced, got }))),
            _ => None,
        }
    })
    .filter_map(|item| async move { item });
    counted.chain(end_check).boxed()
}
