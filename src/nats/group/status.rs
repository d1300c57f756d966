//! Each node's role and applied position (contract section 11), for
//! `GET /v1/group`. Every node puts `nodes.<node>` in the
//! `<PREFIX>_LEADER` bucket every [`EVERY`]; the bucket's `max_age` (the
//! lease) removes a node that stopped. The view adds each node's lag
//! behind the writer and names the lease's holder.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::lease::{Holder, now_ms};

/// How often a node puts its status.
pub(super) const EVERY: Duration = Duration::from_secs(1);

/// The prefix of the nodes' keys in the bucket.
const NODES: &str = "nodes.";

/// What a node does in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// No group: one ledger on its own.
    Single,
    /// The lease's holder, which writes.
    Writer,
    /// Applies the writer's log and serves reads.
    Follower,
}

/// One node's entry in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub role: NodeRole,
    /// The node's head position.
    pub applied: u64,
    /// Where its HTTP API listens.
    pub http: String,
    /// Milliseconds since the Unix epoch when it put this.
    pub updated_ms: u64,
}

/// One node as `GET /v1/group` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub status: NodeStatus,
    /// The writer's applied position less this node's.
    pub lag: u64,
}

/// The body of `GET /v1/group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// The node answering.
    pub node: String,
    /// The lease's holder, when one holds it.
    pub writer: Option<Holder>,
    /// Every node that put its status within the lease, by name.
    pub nodes: Vec<NodeView>,
}

impl GroupView {
    /// A ledger without a group: one node, role `single`.
    pub fn single(http: String, applied: u64) -> Self {
        let status = NodeStatus {
            node: "single".to_owned(),
            role: NodeRole::Single,
            applied,
            http,
            updated_ms: now_ms(),
        };
        Self::of(status.node.clone(), None, vec![status])
    }

    /// The view of `nodes`, each with its lag behind the writer's (or,
    /// with no writer, the most advanced node's) applied position.
    pub(super) fn of(node: String, writer: Option<Holder>, mut nodes: Vec<NodeStatus>) -> Self {
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        let writer_applied = nodes
            .iter()
            .find(|n| n.role == NodeRole::Writer || n.role == NodeRole::Single)
            .map(|n| n.applied)
            .unwrap_or_else(|| nodes.iter().map(|n| n.applied).max().unwrap_or(0));
        let nodes = nodes
            .into_iter()
            .map(|status| NodeView {
                lag: writer_applied.saturating_sub(status.applied),
                status,
            })
            .collect();
        Self {
            node,
            writer,
            nodes,
        }
    }
}

/// Puts this node's status.
pub(super) async fn put(store: &kv::Store, status: &NodeStatus) {
    let bytes = serde_json::to_vec(status).unwrap_or_default();
    if let Err(error) = store
        .put(format!("{NODES}{}", status.node), bytes.into())
        .await
    {
        tracing::debug!(%error, "group: cannot put this node's status");
    }
}

/// Every node's status in the bucket now.
pub(super) async fn read(store: &kv::Store) -> Result<Vec<NodeStatus>, String> {
    let mut keys = store.keys().await.map_err(|e| e.to_string())?;
    let mut nodes = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| e.to_string())?;
        if !key.starts_with(NODES) {
            continue;
        }
        if let Ok(Some(value)) = store.get(key).await
            && let Ok(status) = serde_json::from_slice::<NodeStatus>(&value)
        {
            nodes.push(status);
        }
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, role: NodeRole, applied: u64) -> NodeStatus {
        NodeStatus {
            node: name.into(),
            role,
            applied,
            http: format!("{name}:80"),
            updated_ms: 0,
        }
    }

    #[test]
    fn lag_is_measured_from_the_writer() {
        let view = GroupView::of(
            "b".into(),
            None,
            vec![
                node("c", NodeRole::Follower, 7),
                node("a", NodeRole::Writer, 10),
                node("b", NodeRole::Follower, 10),
            ],
        );
        let lags: Vec<_> = view
            .nodes
            .iter()
            .map(|n| (n.status.node.as_str(), n.lag))
            .collect();
        assert_eq!(lags, [("a", 0), ("b", 0), ("c", 3)]);
    }

    #[test]
    fn a_single_ledger_is_one_node() {
        let view = GroupView::single("127.0.0.1:8080".into(), 42);
        let body = serde_json::to_value(&view).expect("serialises");
        assert_eq!(body["nodes"][0]["role"], "single");
        assert_eq!(body["nodes"][0]["applied"], 42);
        assert_eq!(body["nodes"][0]["lag"], 0);
        assert!(body["writer"].is_null());
    }
}
