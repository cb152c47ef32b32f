//! `vmi-orchestrator`: runs a vmi migration as one Kubernetes Job per step.
//!
//! `vmi-orchestrator pipeline [--file PATH]` validates a pipeline definition
//! and prints its steps with their Job names, deadlines and retries.
//! `vmi-orchestrator run` (the controller) is not implemented yet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vmi_api::Pipeline;

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
    Run,
    /// Validate a pipeline definition and print its steps.
    Pipeline {
        /// A pipeline file; the vCenter migration pipeline built into vmi when omitted.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run => {
            eprintln!("vmi-orchestrator: the controller (run) is not implemented yet");
            ExitCode::FAILURE
        }
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
