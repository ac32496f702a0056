//! A three-node RabbitMQ cluster of private nodes on this machine: one cookie home,
//! nodes 2 and 3 joined to node 1 with `stop_app; join_cluster; start_app`.

use super::rabbit::write_cookie;
use super::{PrivateRabbit, RunDir};
use anyhow::{bail, Context};
use futures_util::future::join_all;
use std::time::{Duration, Instant};

/// Autoheal: a node frozen longer than the distribution tick is seen as partitioned
/// when it wakes; with the default (`ignore`) the cluster would stay split for good.
const CLUSTER_CONF: &str = "cluster_partition_handling = autoheal\n";

pub struct RabbitCluster {
    pub nodes: Vec<PrivateRabbit>,
}

impl RabbitCluster {
    pub async fn start(run: &RunDir) -> anyhow::Result<Self> {
        let base = run.path.join("rmq-cluster");
        let home = base.join("home");
        write_cookie(&home)?;
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let mut nodes = (1..=3)
            .map(|i| {
                let node = format!("chaos-{tag}-n{i}@localhost");
                PrivateRabbit::create(run, &base.join(format!("n{i}")), &home, node, CLUSTER_CONF)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Boots take seconds each: all three at once.
        for booted in join_all(nodes.iter_mut().map(|n| n.restart())).await {
            booted?;
        }
        let first = nodes[0].node.clone();
        let stopped = join_all(nodes[1..].iter().map(|n| n.ctl(&["stop_app"]))).await;
        for s in stopped {
            s?;
        }
        // One join at a time: both change node 1's cluster membership.
        for n in &nodes[1..] {
            n.ctl(&["join_cluster", &first]).await?;
        }
        for s in join_all(nodes[1..].iter().map(|n| n.ctl(&["start_app"]))).await {
            s?;
        }
        let cluster = Self { nodes };
        for i in 0..3 {
            cluster
                .wait_member(i, Duration::from_secs(60))
                .await
                .context("the cluster did not form")?;
        }
        Ok(cluster)
    }

    /// The nodes' AMQP URLs starting with node `first` (0-based), comma-separated:
    /// what a ppctl process gets as AMQP_URL to prefer that node.
    pub fn urls_from(&self, first: usize) -> String {
        (0..self.nodes.len())
            .map(|k| self.nodes[(first + k) % self.nodes.len()].url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node names running according to node `ask`'s `cluster_status`.
    pub async fn running_nodes(&self, ask: usize) -> anyhow::Result<Vec<String>> {
        let out = self.nodes[ask]
            .ctl(&["cluster_status", "--formatter", "json"])
            .await?;
        let status: serde_json::Value =
            serde_json::from_str(&out).context("cluster_status output is not JSON")?;
        Ok(status["running_nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until another node lists node `i` as running: it is back in the cluster.
    pub async fn wait_member(&self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let ask = (i + 1) % self.nodes.len();
        let start = Instant::now();
        loop {
            let running = self.running_nodes(ask).await.unwrap_or_default();
            if running.contains(&self.nodes[i].node) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} is not running in the cluster after {timeout:?} (running: {running:?})",
                    self.nodes[i].node
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Index of the node leading quorum queue `queue`, from `list_queues` on any node
    /// that answers (skipping `avoid`, e.g. a node being killed or frozen).
    pub async fn leader_of(&self, queue: &str, avoid: Option<usize>) -> anyhow::Result<usize> {
        let mut last = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if Some(i) == avoid {
                continue;
            }
            let args = ["list_queues", "name", "leader", "--formatter", "json"];
            let out = match n.ctl(&args).await {
                Ok(out) => out,
                Err(e) => {
                    last = format!("{e:#}");
                    continue;
                }
            };
            let queues: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let leader = queues.as_array().into_iter().flatten().find_map(|q| {
                (q["name"] == queue).then(|| q["leader"].as_str().map(String::from))?
            });
            if let Some(leader) = leader {
                return self
                    .nodes
                    .iter()
                    .position(|n| n.node == leader)
                    .with_context(|| format!("leader {leader} is not one of our nodes"));
            }
            last = format!("{queue} not listed (or no leader) by {}", n.node);
        }
        bail!("no leader found for {queue}: {last}")
    }
}
