//! Ordering the stages the first pass could not serve: each runs after its
//! upstream stages, as a node of a dagrs `Graph`. The executor knows only
//! node indices, their upstream edges and a task to run per node; what a
//! task does (decide, run, commit) is the engine's.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use dagrs::async_trait::async_trait;
use dagrs::{
    Action, Content, DefaultNode, EnvVar, Graph, InChannels, Node, NodeTable, OutChannels, Output,
};

/// The work of one node.
pub type Task = Arc<dyn Fn(usize) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The graph could not be built or run.
#[derive(Debug, thiserror::Error)]
#[error("the stage graph could not run: {0}")]
pub struct ExecutorError(String);

struct NodeAction {
    task: Task,
    index: usize,
}

#[async_trait]
impl Action for NodeAction {
    async fn run(
        &self,
        inputs: &mut InChannels,
        outputs: &mut OutChannels,
        _env: Arc<EnvVar>,
    ) -> Output {
        // Wait for every upstream node; what they send is only a signal.
        let _ = inputs.map(|_| ()).await;
        (self.task)(self.index).await;
        // Always send, even after a failure: a node that sends nothing would
        // leave its successors waiting forever.
        outputs.broadcast(Content::new(())).await;
        Output::empty()
    }
}

/// Runs `task` for every node in `nodes` (a topological order), each after
/// its upstream nodes among them; `upstream(i)` lists node `i`'s.
pub async fn run_graph(
    nodes: &[usize],
    names: &dyn Fn(usize) -> String,
    upstream: &dyn Fn(usize) -> Vec<usize>,
    task: Task,
) -> Result<(), ExecutorError> {
    let err = |e: &dyn std::fmt::Display| ExecutorError(e.to_string());
    let mut table = NodeTable::default();
    let mut graph = Graph::new();
    let mut ids = HashMap::new();
    for &i in nodes {
        let action = NodeAction {
            task: task.clone(),
            index: i,
        };
        let node = DefaultNode::with_action(names(i), action, &mut table);
        ids.insert(i, node.id());
        graph.add_node(node).map_err(|e| err(&e))?;
    }
    let mut down: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in nodes {
        for j in upstream(i) {
            if ids.contains_key(&j) {
                down.entry(j).or_default().push(i);
            }
        }
    }
    for (j, targets) in down {
        let to: Vec<_> = targets.iter().map(|t| ids[t]).collect();
        graph.add_edge(ids[&j], to).map_err(|e| err(&e))?;
    }
    graph.set_env(EnvVar::new(table));
    graph.async_start().await.map(|_| ()).map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_node_runs_after_its_upstream_nodes() {
        // 0 -> 1 -> 3, 0 -> 2 -> 3, and 4 alone.
        let ups: Vec<Vec<usize>> = vec![vec![], vec![0], vec![0], vec![1, 2], vec![]];
        let order = Arc::new(Mutex::new(Vec::new()));
        let seen = order.clone();
        let task: Task = Arc::new(move |i| {
            let seen = seen.clone();
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis((5 - i as u64) * 3)).await;
                seen.lock().unwrap().push(i);
            })
        });
        let ups2 = ups.clone();
        run_graph(
            &[0, 1, 2, 3, 4],
            &|i| format!("n{i}"),
            &move |i| ups2[i].clone(),
            task,
        )
        .await
        .unwrap();
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 5);
        let pos = |n: usize| order.iter().position(|&x| x == n).unwrap();
        for (i, u) in ups.iter().enumerate() {
            for &j in u {
                assert!(pos(j) < pos(i), "{order:?}");
            }
        }
    }
}
