//! The admin endpoints (never recorded): `GET /__mock/stats`, `POST /__mock/faults`,
//! `POST /__mock/reset`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::response::json_response;
use crate::{Fault, MockState};

pub(crate) async fn stats(State(state): State<Arc<MockState>>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "requests": state.request_count(),
            "openStreams": state.open_streams(),
            "cancelledStreams": state.cancelled_streams(),
            "faultsQueued": state.faults_queued(),
        }),
    )
}

/// One queued fault as `POST /__mock/faults` takes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultSpec {
    status: Option<u16>,
    retry_after: Option<u64>,
    body: Option<String>,
    #[serde(default)]
    hang: bool,
    delay_ms: Option<u64>,
    cut: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FaultSpecs {
    Many(Vec<FaultSpec>),
    One(FaultSpec),
}

impl FaultSpec {
    fn fault(self) -> Option<Fault> {
        if let Some(status) = self.status {
            return Some(Fault::Status {
                status,
                retry_after: self.retry_after,
                body: self.body,
            });
        }
        if self.hang {
            return Some(Fault::Hang);
        }
        if let Some(ms) = self.delay_ms {
            return Some(Fault::Delay(Duration::from_millis(ms)));
        }
        self.cut.map(|after_chunks| Fault::Cut { after_chunks })
    }
}

pub(crate) async fn faults(
    State(state): State<Arc<MockState>>,
    body: axum::body::Bytes,
) -> Response {
    let specs = match serde_json::from_slice::<FaultSpecs>(&body) {
        Ok(FaultSpecs::Many(specs)) => specs,
        Ok(FaultSpecs::One(spec)) => vec![spec],
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("bad faults: {e}")}),
            );
        }
    };
    let mut parsed = Vec::with_capacity(specs.len());
    for spec in specs {
        match spec.fault() {
            Some(fault) => parsed.push(fault),
            None => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "each fault needs status, hang, delayMs or cut"}),
                );
            }
        }
    }
    for fault in parsed {
        state.push_fault(fault);
    }
    json_response(
        StatusCode::OK,
        &json!({"faultsQueued": state.faults_queued()}),
    )
}

pub(crate) async fn reset(State(state): State<Arc<MockState>>) -> Response {
    state.clear();
    json_response(StatusCode::OK, &json!({"reset": true}))
}
