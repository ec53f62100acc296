//! `k8s-sim`: the Kubernetes API-server simulator as a process, for benchmarks and manual runs.
//!
//! Prints the API URL on stdout, writes a kubeconfig, serves request counts at `/sim/stats`,
//! and runs until SIGTERM or ctrl-c, then kills every pod process it started.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use spawner_k8s::sim::{NodeSpec, SimConfig, Simulator, quantity};

#[derive(Parser, Debug)]
#[command(
    name = "k8s-sim",
    about = "A Kubernetes API-server simulator with a scheduler and a process-running kubelet"
)]
struct Args {
    /// Address of the API server (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Number of nodes (node-1 … node-N).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// CPU per node, as a Kubernetes quantity ("16", "500m").
    #[arg(long, default_value = "16")]
    node_cpu: String,
    /// Memory per node, as a Kubernetes quantity ("64Gi").
    #[arg(long, default_value = "64Gi")]
    node_memory: String,
    /// nvidia.com/gpu per node.
    #[arg(long, default_value_t = 0)]
    node_gpus: u64,
    /// How long the first pull of an image on a node takes, in milliseconds.
    #[arg(long, default_value_t = 0)]
    image_pull_ms: u64,
    /// Delay between a container's creation and its process start, in milliseconds.
    #[arg(long, default_value_t = 0)]
    container_start_ms: u64,
    /// Watch bookmark interval, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    bookmark_ms: u64,
    /// Also write the kubeconfig here.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Root directory for pod directories and logs (default: a fresh temp dir, removed at exit).
    #[arg(long)]
    root: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let cpu = quantity::parse(&args.node_cpu)
        .with_context(|| format!("--node-cpu {:?} is not a quantity (e.g. 16, 500m)", args.node_cpu))?;
    let memory = quantity::parse(&args.node_memory)
        .with_context(|| format!("--node-memory {:?} is not a quantity (e.g. 64Gi)", args.node_memory))?;
    let mut config = SimConfig {
        nodes: (1..=args.nodes)
            .map(|i| NodeSpec::new(&format!("node-{i}"), cpu.millis(), memory.units()).with_gpus(args.node_gpus))
            .collect(),
        image_pull: Duration::from_millis(args.image_pull_ms),
        container_start: Duration::from_millis(args.container_start_ms),
        bookmark_interval: Duration::from_millis(args.bookmark_ms),
        listen: args.listen,
        ..SimConfig::default()
    };
    if let Some(root) = args.root {
        config.root_dir = root;
    }
    let sim = Simulator::start(config).await?;
    if let Some(path) = &args.kubeconfig {
        std::fs::copy(sim.kubeconfig_path(), path)
            .with_context(|| format!("writing the kubeconfig to {}", path.display()))?;
    }
    println!("{}", sim.url());
    eprintln!(
        "kubeconfig: {}",
        args.kubeconfig.as_deref().unwrap_or(sim.kubeconfig_path()).display()
    );

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("k8s-sim: stopping; killing pod processes");
    sim.shutdown().await;
    Ok(())
}
