//! The agent's wire types: the small requests of the actions whose trait
//! methods take plain arguments, the health answer, and the error body with
//! its codes. Every other body is the action's own serde type from
//! drctl-node.

use std::path::PathBuf;

use drctl_node::{NodeError, NodeErrorKind, NodeRef, StopMode};
use serde::{Deserialize, Serialize};

/// `POST /v1/node/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    pub node: NodeRef,
}

/// `POST /v1/node/stop`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    pub node: NodeRef,
    pub mode: StopMode,
}

/// `GET /v1/health`: who answers and what it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHealth {
    /// drctl's version of the agent.
    pub version: String,
    /// The host it runs on.
    pub host: String,
    /// The data directories it acts on.
    pub data_dirs: Vec<PathBuf>,
    /// Where its scratch copies go.
    pub scratch_root: PathBuf,
}

/// The node actions, as their paths name them (`/v1/node/rewind_or_reclone`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::Display,
)]
#[strum(serialize_all = "snake_case")]
pub enum NodeAction {
    Status,
    Stop,
    Start,
    RewindOrReclone,
    ConfigureStandby,
    RestoreBackup,
    CloneScratch,
    RestoreScratch,
    TeardownScratch,
    HardFence,
}

impl NodeAction {
    /// The path of the action on an agent.
    pub fn path(self) -> String {
        format!("/v1/node/{self}")
    }
}

/// The `code` of an agent's error, and the HTTP status it comes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: no client certificate; nothing was done.
    Unauthenticated,
    /// 400: the body is not the action's JSON input.
    BadRequest,
    /// 404: no such action or path.
    NotFound,
    /// 405: a known path with another method.
    MethodNotAllowed,
    /// 413: a body over the agent's limit (1 MiB).
    PayloadTooLarge,
    /// 403 when the agent does not serve the directory (nothing done), 409
    /// when the action refused ([`NodeErrorKind::Refused`]).
    NodeRefused,
    /// 404: [`NodeErrorKind::Missing`].
    NodeMissing,
    /// 500: [`NodeErrorKind::Failed`].
    NodeFailed,
    /// 502: [`NodeErrorKind::Unreachable`] (what the agent itself relies on
    /// did not answer).
    NodeUnreachable,
    /// 500: a bug in the agent (a handler panicked); the log has it.
    Internal,
}

impl ErrorCode {
    /// The code of a node action's failure.
    pub fn of(kind: NodeErrorKind) -> ErrorCode {
        match kind {
            NodeErrorKind::Refused => ErrorCode::NodeRefused,
            NodeErrorKind::Missing => ErrorCode::NodeMissing,
            NodeErrorKind::Failed => ErrorCode::NodeFailed,
            NodeErrorKind::Unreachable => ErrorCode::NodeUnreachable,
        }
    }

    /// The node action's failure kind a code stands for, when it is one.
    pub fn node_kind(self) -> Option<NodeErrorKind> {
        match self {
            ErrorCode::NodeRefused => Some(NodeErrorKind::Refused),
            ErrorCode::NodeMissing => Some(NodeErrorKind::Missing),
            ErrorCode::NodeFailed => Some(NodeErrorKind::Failed),
            ErrorCode::NodeUnreachable => Some(NodeErrorKind::Unreachable),
            _ => None,
        }
    }
}

/// `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

impl From<&NodeError> for ErrorBody {
    fn from(e: &NodeError) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::of(e.kind),
                message: e.message.clone(),
            },
        }
    }
}
