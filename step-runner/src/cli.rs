//! The `vmi-step` command line: one subcommand per step of the pipeline plus
//! `plan`.
//!
//! The subcommands are built from [`Step::ALL`] with the pipeline file's
//! descriptions, so every step the orchestrator can start has a subcommand
//! and its `--help` says what the step does.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use vmi_api::{Pipeline, Step};

use crate::Action;
use crate::logging::LogFormat;
use crate::target::VmiRef;

/// How `vmi-step plan` prints the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanOutput {
    /// A readable list.
    Text,
    /// A JSON document.
    Json,
}

/// A parsed `vmi-step` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// What to do.
    pub action: Action,
    /// The vmi to work on.
    pub vmi: VmiRef,
    /// The kubeconfig to use; in-cluster configuration or `$KUBECONFIG` when
    /// absent.
    pub kubeconfig: Option<PathBuf>,
    /// How to log.
    pub log_format: LogFormat,
}

/// The `vmi-step` command with one subcommand per pipeline step.
pub fn command(pipeline: &Pipeline) -> Command {
    let mut command = Command::new("vmi-step")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Runs one step of a vSphere migration (vmi) and records its outcome in the vmi's status.")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(
            Arg::new("log-format")
                .long("log-format")
                .global(true)
                .value_parser(value_parser!(LogFormat))
                .default_value("text")
                .help("How log lines are written"),
        );
    for step in Step::ALL {
        let about = pipeline
            .step(step.name())
            .map(|s| s.description.clone())
            .unwrap_or_default();
        command = command.subcommand(with_target_args(
            Command::new(step.name()).about(about).arg(
                Arg::new("undo")
                    .long("undo")
                    .action(ArgAction::SetTrue)
                    .help("Undo the step from the backup it took (what a rollback Job runs)"),
            ),
        ));
    }
    command.subcommand(with_target_args(
        Command::new("plan")
            .about("Prints every object the whole migration would create or change, in order, changing nothing.")
            .arg(
                Arg::new("output")
                    .long("output")
                    .short('o')
                    .value_parser(value_parser!(PlanOutput))
                    .default_value("text")
                    .help("How to print the plan"),
            ),
    ))
}

fn with_target_args(command: Command) -> Command {
    command
        .arg(
            Arg::new("vmi")
                .long("vmi")
                .required(true)
                .value_name("NAMESPACE/NAME")
                .value_parser(|s: &str| s.parse::<VmiRef>().map_err(|e| e.to_string()))
                .help("The VSphereMigrationInfra to work on"),
        )
        .arg(
            Arg::new("kubeconfig")
                .long("kubeconfig")
                .value_name("PATH")
                .value_parser(value_parser!(PathBuf))
                .action(ArgAction::Set)
                .help("Kubeconfig to use; in-cluster configuration or $KUBECONFIG when absent"),
        )
}

/// Reads an [`Invocation`] from matches of [`command`].
pub fn invocation(matches: &ArgMatches) -> Option<Invocation> {
    let (name, sub) = matches.subcommand()?;
    let action = match name {
        "plan" => Action::Plan {
            output: *sub.get_one::<PlanOutput>("output")?,
        },
        step if sub.get_flag("undo") => Action::Undo(step.parse().ok()?),
        step => Action::Step(step.parse().ok()?),
    };
    Some(Invocation {
        action,
        vmi: sub.get_one::<VmiRef>("vmi")?.clone(),
        kubeconfig: sub.get_one::<PathBuf>("kubeconfig").cloned(),
        log_format: *matches.get_one::<LogFormat>("log-format")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, clap::Error> {
        let pipeline = Pipeline::vcenter_migration().unwrap();
        let matches = command(&pipeline).try_get_matches_from(args)?;
        Ok(invocation(&matches).expect("matches of command() always make an invocation"))
    }

    #[test]
    fn every_step_is_a_subcommand_described_by_the_pipeline() {
        let pipeline = Pipeline::vcenter_migration().unwrap();
        let command = command(&pipeline);
        for step in &pipeline.steps {
            let sub = command
                .find_subcommand(&step.name)
                .unwrap_or_else(|| panic!("no subcommand {}", step.name));
            assert_eq!(
                sub.get_about().map(|a| a.to_string()),
                Some(step.description.clone())
            );
        }
        assert!(command.find_subcommand("plan").is_some());
        command.debug_assert();
    }

    #[test]
    fn a_step_with_its_target_and_kubeconfig() {
        let invocation = parse(&[
            "vmi-step",
            "update-infra",
            "--vmi",
            "vmi-system/m1",
            "--kubeconfig",
            "/tmp/kc",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(invocation.action, Action::Step(Step::UpdateInfra));
        assert_eq!(invocation.vmi.to_string(), "vmi-system/m1");
        assert_eq!(invocation.kubeconfig, Some(PathBuf::from("/tmp/kc")));
        assert_eq!(invocation.log_format, LogFormat::Json);
    }

    #[test]
    fn undo_is_a_flag_of_every_step() {
        let invocation = parse(&["vmi-step", "create-tags", "--vmi", "ns/m", "--undo"]).unwrap();
        assert_eq!(invocation.action, Action::Undo(Step::CreateTags));
        assert!(parse(&["vmi-step", "plan", "--vmi", "ns/m", "--undo"]).is_err());
    }

    #[test]
    fn plan_defaults_to_text_and_log_format_to_text() {
        let invocation = parse(&["vmi-step", "plan", "--vmi", "ns/m"]).unwrap();
        assert_eq!(
            invocation.action,
            Action::Plan {
                output: PlanOutput::Text
            }
        );
        assert_eq!(invocation.log_format, LogFormat::Text);
        assert_eq!(invocation.kubeconfig, None);
    }

    #[test]
    fn the_vmi_is_required_and_checked() {
        let missing = parse(&["vmi-step", "preflight"]).unwrap_err();
        assert_eq!(
            missing.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        let malformed = parse(&["vmi-step", "preflight", "--vmi", "just-a-name"])
            .unwrap_err()
            .to_string();
        assert!(malformed.contains("<namespace>/<name>"), "{malformed}");
    }

    #[test]
    fn an_unknown_step_is_refused() {
        let err = parse(&["vmi-step", "update-infrastructure", "--vmi", "ns/m"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidSubcommand);
    }
}
