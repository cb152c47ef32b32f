//! The pipeline definition: which steps run, in which order, and how each
//! one's Job is bounded (timeout, retries) and undone (reversible, point of no
//! return).
//!
//! The definition is data (`pipelines/vcenter-migration.yaml`) so that the
//! orchestrator, the docs and the tests read one file. Loading it checks
//! everything a broken file could get wrong and reports every problem at once.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::step::Step;

/// The pipeline shipped with vmi, embedded so both binaries run the same one.
pub const VCENTER_MIGRATION_YAML: &str = include_str!("../../pipelines/vcenter-migration.yaml");

/// Shortest Job deadline any step may have: a deadline must be positive.
/// Test pipelines use a few seconds to prove timeouts.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Shortest Job deadline a step of the migration pipeline may have: anything
/// shorter cannot even pull an image and talk to a vCenter.
pub const MIN_MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest Job deadline a step may have (72 h): longer hides a hung step.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(72 * 3600);
/// Most pod retries a step may have; steps are idempotent, but a step that
/// fails more often than this needs a person.
pub const MAX_RETRIES: u32 = 10;
/// Longest step name: `vmi-rollback-NN-` plus the name must fit the 63
/// characters of a Job name that Kubernetes copies into a label.
pub const MAX_NAME_LEN: usize = 63 - "vmi-rollback-00-".len();

/// A validated pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    /// Name of the pipeline, e.g. `vcenter-migration`.
    pub name: String,
    /// What the pipeline does.
    pub description: String,
    /// The steps in run order; `steps[i].index == i`.
    pub steps: Vec<StepDefinition>,
}

/// How one step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepDefinition {
    /// Position in the pipeline, from 0, without gaps.
    pub index: u32,
    /// Step name: a DNS label, also the `vmi-step` subcommand.
    pub name: String,
    /// One line saying what the step does.
    pub description: String,
    /// The Job's `activeDeadlineSeconds`.
    pub timeout_seconds: u64,
    /// The Job's `backoffLimit`.
    pub retries: u32,
    /// Whether the step can undo itself from its backup.
    pub reversible: bool,
    /// Once this step has started, rollback is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub point_of_no_return: bool,
    /// The step changes nothing, so it also runs while the vmi is
    /// `Pending` (validate and plan only). Read-only steps at the start of
    /// the pipeline form the plan.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Earlier steps whose recorded results this step reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
}

impl StepDefinition {
    /// Name of the Job that runs this step: `vmi-step-NN-<name>`.
    pub fn job_name(&self) -> String {
        format!("vmi-step-{:02}-{}", self.index, self.name)
    }

    /// Name of the Job that undoes this step: `vmi-rollback-NN-<name>`.
    pub fn rollback_job_name(&self) -> String {
        format!("vmi-rollback-{:02}-{}", self.index, self.name)
    }

    /// The Job's deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

/// The file as written, before validation.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PipelineFile {
    name: String,
    description: String,
    steps: Vec<StepDefinition>,
}

/// Why a pipeline definition was refused.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The file is not YAML of the expected shape.
    #[error("pipeline {source_name}: cannot read it: {message}")]
    Parse {
        /// Where the definition came from (a path, or `embedded`).
        source_name: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file parsed but breaks one or more rules.
    #[error("pipeline {source_name} is invalid:\n{}", ProblemList(.problems))]
    Invalid {
        /// Where the definition came from.
        source_name: String,
        /// Every rule it breaks.
        problems: Vec<PipelineProblem>,
    },
}

struct ProblemList<'a>(&'a [PipelineProblem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// One broken rule of a pipeline definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineProblem {
    /// The pipeline has no steps.
    #[error("it has no steps")]
    NoSteps,
    /// The pipeline's name or description is empty.
    #[error("its {field} is empty")]
    EmptyField {
        /// `name` or `description`.
        field: &'static str,
    },
    /// Two steps share a name.
    #[error("steps {first} and {second} are both named {name:?}; step names must be unique")]
    DuplicateName {
        /// The shared name.
        name: String,
        /// Index of the first step with it.
        first: u32,
        /// Index of the second step with it.
        second: u32,
    },
    /// Indexes do not count 0, 1, 2… in file order.
    #[error(
        "step {name:?} has index {found} but is entry {expected} of the list; indexes must count from 0 without gaps, in order"
    )]
    IndexOutOfOrder {
        /// The step.
        name: String,
        /// Its position in the list.
        expected: u32,
        /// The index it declares.
        found: u32,
    },
    /// A name that cannot be part of a Job name.
    #[error(
        "step {index} name {name:?} must be 1-{max} characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
    )]
    InvalidName {
        /// The step's index.
        index: u32,
        /// The name.
        name: String,
        /// The longest allowed name.
        max: usize,
    },
    /// A description that is empty or spans several lines.
    #[error("step {name:?} needs a one-line description")]
    BadDescription {
        /// The step.
        name: String,
    },
    /// A timeout outside the sane range.
    #[error("step {name:?} timeoutSeconds {seconds} is outside {min}..={max}")]
    TimeoutOutOfRange {
        /// The step.
        name: String,
        /// The timeout given.
        seconds: u64,
        /// Shortest allowed.
        min: u64,
        /// Longest allowed.
        max: u64,
    },
    /// Too many retries.
    #[error("step {name:?} retries {retries} is more than {max}")]
    TooManyRetries {
        /// The step.
        name: String,
        /// The retries given.
        retries: u32,
        /// Most allowed.
        max: u32,
    },
    /// A step needs a step that does not run before it.
    #[error("step {name:?} needs {need:?}, which is not an earlier step")]
    NeedNotEarlier {
        /// The step.
        name: String,
        /// The step it needs.
        need: String,
    },
    /// More than one point of no return, or one that claims to be reversible.
    #[error("step {name:?} is a point of no return: {reason}")]
    BadPointOfNoReturn {
        /// The step.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A read-only step that claims to be reversible or a point of no return.
    #[error("step {name:?} is read-only, so it cannot be {what}")]
    BadReadOnly {
        /// The step.
        name: String,
        /// `reversible` or `a point of no return`.
        what: &'static str,
    },
    /// A migration step with a deadline too short to do any vCenter work.
    #[error("step {name:?} timeoutSeconds {seconds} is below the {min} s a migration step needs")]
    MigrationTimeoutTooShort {
        /// The step.
        name: String,
        /// The timeout given.
        seconds: u64,
        /// Shortest allowed.
        min: u64,
    },
    /// The vCenter migration pipeline does not list exactly the steps vmi
    /// implements.
    #[error(
        "entry {index} is {found:?} but vmi's migration runs {expected:?} there; the migration pipeline must list every step of vmi-step in order"
    )]
    NotTheMigrationSteps {
        /// Position in the list.
        index: usize,
        /// The step name found (or `<missing>`).
        found: String,
        /// The step vmi runs there (or `<none>`).
        expected: String,
    },
}

impl Pipeline {
    /// The vCenter migration pipeline shipped with vmi, checked to list
    /// exactly the steps `vmi-step` implements, in order.
    pub fn vcenter_migration() -> Result<Pipeline, PipelineError> {
        Pipeline::migration_from_yaml(VCENTER_MIGRATION_YAML, "embedded vcenter-migration.yaml")
    }

    /// A vCenter migration pipeline read from `yaml` (e.g. a file with
    /// adjusted timeouts): valid, and listing exactly the steps of
    /// [`Step::ALL`] in order.
    pub fn migration_from_yaml(yaml: &str, source_name: &str) -> Result<Pipeline, PipelineError> {
        let pipeline = Pipeline::from_yaml(yaml, source_name)?;
        let mut problems: Vec<_> = (0..pipeline.steps.len().max(Step::ALL.len()))
            .filter_map(|i| {
                let found = pipeline.steps.get(i).map(|s| s.name.as_str());
                let expected = Step::ALL.get(i).map(|s| s.name());
                (found != expected).then(|| PipelineProblem::NotTheMigrationSteps {
                    index: i,
                    found: found.unwrap_or("<missing>").to_owned(),
                    expected: expected.unwrap_or("<none>").to_owned(),
                })
            })
            .collect();
        problems.extend(
            pipeline
                .steps
                .iter()
                .filter(|s| s.timeout() < MIN_MIGRATION_TIMEOUT)
                .map(|s| PipelineProblem::MigrationTimeoutTooShort {
                    name: s.name.clone(),
                    seconds: s.timeout_seconds,
                    min: MIN_MIGRATION_TIMEOUT.as_secs(),
                }),
        );
        if problems.is_empty() {
            Ok(pipeline)
        } else {
            Err(PipelineError::Invalid {
                source_name: source_name.to_owned(),
                problems,
            })
        }
    }

    /// Any pipeline (e.g. a test pipeline) read from `yaml` and validated.
    /// `source_name` says where it came from in error messages.
    pub fn from_yaml(yaml: &str, source_name: &str) -> Result<Pipeline, PipelineError> {
        let file: PipelineFile =
            serde_saphyr::from_str(yaml).map_err(|err| PipelineError::Parse {
                source_name: source_name.to_owned(),
                message: err.to_string(),
            })?;
        let problems = problems_of(&file);
        if !problems.is_empty() {
            return Err(PipelineError::Invalid {
                source_name: source_name.to_owned(),
                problems,
            });
        }
        Ok(Pipeline {
            name: file.name,
            description: file.description,
            steps: file.steps,
        })
    }

    /// The step with this name.
    pub fn step(&self, name: &str) -> Option<&StepDefinition> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The steps that run while a vmi is `Pending`: the read-only steps at
    /// the start of the pipeline (the plan).
    pub fn planning_steps(&self) -> usize {
        self.steps.iter().take_while(|s| s.read_only).count()
    }

    /// The step as shown in `status.currentStep` and the `Step` printer
    /// column: `<index>/<count> <name>`, e.g. `7/17 update-infra`.
    pub fn progress_label(&self, step: &StepDefinition) -> String {
        format!("{}/{} {}", step.index, self.steps.len(), step.name)
    }
}

fn problems_of(file: &PipelineFile) -> Vec<PipelineProblem> {
    let mut problems = Vec::new();
    if file.name.trim().is_empty() {
        problems.push(PipelineProblem::EmptyField { field: "name" });
    }
    if file.description.trim().is_empty() {
        problems.push(PipelineProblem::EmptyField {
            field: "description",
        });
    }
    if file.steps.is_empty() {
        problems.push(PipelineProblem::NoSteps);
    }
    let mut seen: HashMap<&str, u32> = HashMap::new();
    let mut point_of_no_return: Option<&str> = None;
    for (position, step) in file.steps.iter().enumerate() {
        let position = u32::try_from(position).unwrap_or(u32::MAX);
        if step.index != position {
            problems.push(PipelineProblem::IndexOutOfOrder {
                name: step.name.clone(),
                expected: position,
                found: step.index,
            });
        }
        if !is_step_name(&step.name) {
            problems.push(PipelineProblem::InvalidName {
                index: step.index,
                name: step.name.clone(),
                max: MAX_NAME_LEN,
            });
        }
        if let Some(&first) = seen.get(step.name.as_str()) {
            problems.push(PipelineProblem::DuplicateName {
                name: step.name.clone(),
                first,
                second: step.index,
            });
        }
        if step.description.trim().is_empty() || step.description.contains('\n') {
            problems.push(PipelineProblem::BadDescription {
                name: step.name.clone(),
            });
        }
        if !(MIN_TIMEOUT.as_secs()..=MAX_TIMEOUT.as_secs()).contains(&step.timeout_seconds) {
            problems.push(PipelineProblem::TimeoutOutOfRange {
                name: step.name.clone(),
                seconds: step.timeout_seconds,
                min: MIN_TIMEOUT.as_secs(),
                max: MAX_TIMEOUT.as_secs(),
            });
        }
        if step.retries > MAX_RETRIES {
            problems.push(PipelineProblem::TooManyRetries {
                name: step.name.clone(),
                retries: step.retries,
                max: MAX_RETRIES,
            });
        }
        for need in &step.needs {
            if !seen.contains_key(need.as_str()) {
                problems.push(PipelineProblem::NeedNotEarlier {
                    name: step.name.clone(),
                    need: need.clone(),
                });
            }
        }
        if step.read_only && step.reversible {
            problems.push(PipelineProblem::BadReadOnly {
                name: step.name.clone(),
                what: "reversible",
            });
        }
        if step.read_only && step.point_of_no_return {
            problems.push(PipelineProblem::BadReadOnly {
                name: step.name.clone(),
                what: "a point of no return",
            });
        }
        if step.point_of_no_return {
            if step.reversible {
                problems.push(PipelineProblem::BadPointOfNoReturn {
                    name: step.name.clone(),
                    reason: "it cannot also be reversible",
                });
            }
            if point_of_no_return.is_some() {
                problems.push(PipelineProblem::BadPointOfNoReturn {
                    name: step.name.clone(),
                    reason: "a pipeline has at most one",
                });
            }
            point_of_no_return = Some(&step.name);
        }
        seen.entry(&step.name).or_insert(step.index);
    }
    problems
}

/// A DNS label short enough to make `vmi-rollback-NN-<name>` a valid Job name.
fn is_step_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}
