//! Loading and removing many routes outside the measurements (pre-population, clean-up): in
//! batches of [`BATCH`] through edgeproxy's `POST /api/batch` when the API has it, otherwise one
//! request per route over [`PARALLEL`] keep-alive connections (configurable-http-proxy).

use std::cell::Cell;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::admin::client::{ApiConn, ApiTarget, expect_status};
use crate::error_kind::ErrorKind;

/// Routes per batch request (about 1 MB of JSON).
pub const BATCH: usize = 10_000;
/// Connections used when routes go one by one.
pub const PARALLEL: usize = 64;

/// How a bulk operation went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BulkResult {
    /// `"batch"` or `"per_route"`.
    pub via: &'static str,
    pub seconds: f64,
    /// Routes whose request failed (deletes of routes already gone are not failures).
    pub failed: u64,
}

enum Op {
    Add,
    Remove,
}

/// Adds every key in `keys`, pointing at the target's route target.
pub async fn add_all(api: &ApiTarget, keys: &[String]) -> Result<BulkResult, ErrorKind> {
    bulk(api, keys, Op::Add).await
}

/// Removes every key in `keys`.
pub async fn remove_all(api: &ApiTarget, keys: &[String]) -> Result<BulkResult, ErrorKind> {
    bulk(api, keys, Op::Remove).await
}

async fn bulk(api: &ApiTarget, keys: &[String], op: Op) -> Result<BulkResult, ErrorKind> {
    let started = Instant::now();
    if keys.is_empty() {
        return Ok(BulkResult {
            via: "batch",
            seconds: 0.0,
            failed: 0,
        });
    }
    let mut conn = None;
    let mut batched = true;
    for chunk in keys.chunks(BATCH) {
        let body = match op {
            Op::Add => {
                let add: Map<String, Value> = chunk
                    .iter()
                    .map(|k| (k.clone(), json!({ "target": api.route_target })))
                    .collect();
                json!({ "add": add })
            }
            Op::Remove => json!({ "remove": chunk }),
        };
        let status = api.batch(&mut conn, Bytes::from(body.to_string())).await?.status;
        if status == 404 || status == 405 {
            batched = false;
            break;
        }
        expect_status(status, 200)?;
    }
    if batched {
        return Ok(BulkResult {
            via: "batch",
            seconds: started.elapsed().as_secs_f64(),
            failed: 0,
        });
    }
    let next = Cell::new(0usize);
    let failed = Cell::new(0u64);
    let workers = (0..PARALLEL.min(keys.len())).map(|_| async {
        let mut conn: Option<ApiConn> = None;
        loop {
            let i = next.get();
            let Some(key) = keys.get(i) else { break };
            next.set(i + 1);
            let ok = match op {
                Op::Add => matches!(api.add(&mut conn, key).await, Ok(r) if r.status == 201),
                Op::Remove => matches!(api.delete(&mut conn, key).await, Ok(r) if r.status == 204 || r.status == 404),
            };
            if !ok {
                failed.set(failed.get() + 1);
            }
        }
    });
    futures_util::future::join_all(workers).await;
    Ok(BulkResult {
        via: "per_route",
        seconds: started.elapsed().as_secs_f64(),
        failed: failed.get(),
    })
}
