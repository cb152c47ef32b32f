//! `vmi-orchestrator`: runs a vmi migration as one Kubernetes Job per step.
//!
//! `vmi-orchestrator pipeline [--file PATH]` validates a pipeline definition
//! and prints its steps with their Job names, deadlines and retries.
//! `vmi-orchestrator run` watches vmi objects and runs their steps as Jobs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vmi_api::Pipeline;
use vmi_orchestrator::job::JobTemplate;
use vmi_orchestrator::run::{RunOptions, run};

mod pipeline_table;

/// Runs a vSphere migration (vmi) as one Kubernetes Job per step.
#[derive(Parser)]
#[command(name = "vmi-orchestrator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch vmi objects and run their steps as Jobs (the controller).
    Run(Box<RunArgs>),
    /// Validate a pipeline definition and print its steps.
    Pipeline {
        /// A pipeline file; the vCenter migration pipeline built into vmi when omitted.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A kubeconfig file; in-cluster configuration or $KUBECONFIG when omitted.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Run only the vmis of this namespace (all namespaces when omitted; the
    /// one-migration-per-cluster rule applies within what is watched).
    #[arg(long, env = "VMI_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// The container image of the step Jobs (the orchestrator's own image).
    #[arg(long, env = "VMI_IMAGE")]
    image: String,
    /// The command the step Jobs run, before the step's arguments.
    #[arg(
        long,
        env = "VMI_STEP_COMMAND",
        default_value = "vmi-step",
        value_name = "WORDS"
    )]
    step_command: String,
    /// The service account of the step Jobs.
    #[arg(
        long,
        env = "VMI_STEP_SERVICE_ACCOUNT",
        default_value = "vmi-step-runner"
    )]
    service_account: String,
    /// A pipeline file instead of the built-in vCenter migration. With the
    /// default step command it must list vmi-step's steps in order (tuned
    /// timeouts or retries); a custom step command may run any pipeline.
    #[arg(long, value_name = "PATH")]
    pipeline: Option<PathBuf>,
    /// Namespace of the leader-election Lease (the orchestrator's own).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "vmi-orchestrator")]
    lease_name: String,
    /// Seconds a lease stays valid without renewal.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    lease_seconds: u64,
    /// This replica's name in the Lease and on the Jobs it creates.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// How log lines are written.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // kube's watcher warns about each failed list with a debug dump of the
    // API's answer; the orchestrator says the same once in plain words (see
    // `run`). Keep the watcher's own lines for whoever asks for them.
    let asked_for_kube = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("kube_runtime"));
    if !asked_for_kube && let Ok(quiet) = "kube_runtime::watcher=error".parse() {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn load_pipeline(file: Option<&PathBuf>, any: bool) -> Result<Pipeline, String> {
    let Some(path) = file else {
        return Pipeline::vcenter_migration().map_err(|e| e.to_string());
    };
    let yaml = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read pipeline {}: {err}", path.display()))?;
    let name = path.display().to_string();
    if any {
        Pipeline::from_yaml(&yaml, &name)
    } else {
        Pipeline::migration_from_yaml(&yaml, &name)
    }
    .map_err(|e| e.to_string())
}

fn run_command(args: RunArgs) -> ExitCode {
    init_logging(args.log_format);
    let command: Vec<String> = args
        .step_command
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let custom_command = command != ["vmi-step"];
    let pipeline = match load_pipeline(args.pipeline.as_ref(), custom_command) {
        Ok(pipeline) => pipeline,
        Err(err) => {
            eprintln!("vmi-orchestrator: {err}");
            return ExitCode::from(2);
        }
    };
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "orchestrator".to_owned());
        format!("{host}-{}", std::process::id())
    });
    let options = RunOptions {
        kubeconfig: args.kubeconfig,
        namespace: args.namespace,
        pipeline,
        template: JobTemplate {
            image: args.image,
            command,
            service_account: args.service_account,
            identity,
        },
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        lease_duration: Duration::from_secs(args.lease_seconds),
        metrics_address: args.metrics_address,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("vmi-orchestrator: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("vmi-orchestrator: {err}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run_command(*args),
        Command::Pipeline { file } => {
            let loaded = match &file {
                None => Pipeline::vcenter_migration(),
                Some(path) => match std::fs::read_to_string(path) {
                    Ok(yaml) => Pipeline::from_yaml(&yaml, &path.display().to_string()),
                    Err(err) => {
                        eprintln!(
                            "vmi-orchestrator: cannot read pipeline {}: {err}",
                            path.display()
                        );
                        return ExitCode::from(2);
                    }
                },
            };
            match loaded {
                Ok(pipeline) => {
                    print!("{}", pipeline_table::render(&pipeline));
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("vmi-orchestrator: {err}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
