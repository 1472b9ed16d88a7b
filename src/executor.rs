//! Executors order the stages a first pass could not serve from the cache:
//! the local one is a dagrs `Graph`, and the trait keeps dagrs at arm's
//! length. Where each stage's work then happens (this process or a Slurm
//! job) is the engine's [`crate::backend::StageBackend`].

use std::collections::HashMap;
use std::sync::Arc;

use dagrs::async_trait::async_trait;
use dagrs::{
    Action, Content, DefaultNode, EnvVar, Graph, InChannels, Node, NodeTable, OutChannels, Output,
};

use crate::engine::Engine;

/// Runs a set of stages, each after its upstream stages.
#[async_trait]
pub trait Executor {
    /// Runs `stages` (indices into the plan, in topological order).
    async fn execute(&self, engine: Arc<Engine>, stages: Vec<usize>) -> Result<(), String>;
}

/// Runs stages as dagrs graph nodes on the tokio runtime.
pub struct DagrsExecutor;

struct StageAction {
    engine: Arc<Engine>,
    index: usize,
}

#[async_trait]
impl Action for StageAction {
    async fn run(
        &self,
        inputs: &mut InChannels,
        outputs: &mut OutChannels,
        _env: Arc<EnvVar>,
    ) -> Output {
        // Wait for every upstream node; what they send is only a signal, the
        // results live in the engine.
        let _ = inputs.map(|_| ()).await;
        self.engine.clone().execute(self.index).await;
        // Always send, even after a failure: a node that sends nothing would
        // leave its successors waiting forever.
        outputs.broadcast(Content::new(())).await;
        Output::empty()
    }
}

#[async_trait]
impl Executor for DagrsExecutor {
    async fn execute(&self, engine: Arc<Engine>, stages: Vec<usize>) -> Result<(), String> {
        let mut table = NodeTable::default();
        let mut graph = Graph::new();
        let mut ids = HashMap::new();
        for &i in &stages {
            let action = StageAction {
                engine: engine.clone(),
                index: i,
            };
            let node =
                DefaultNode::with_action(engine.plan.stages[i].name.clone(), action, &mut table);
            ids.insert(i, node.id());
            graph.add_node(node).map_err(|e| e.to_string())?;
        }
        let mut down: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in &stages {
            for j in &engine.plan.stages[i].upstream {
                if ids.contains_key(j) {
                    down.entry(*j).or_default().push(i);
                }
            }
        }
        for (j, targets) in down {
            let to: Vec<_> = targets.iter().map(|t| ids[t]).collect();
            graph.add_edge(ids[&j], to).map_err(|e| e.to_string())?;
        }
        graph.set_env(EnvVar::new(table));
        graph
            .async_start()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
