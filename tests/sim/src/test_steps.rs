//! The tiny step program the orchestrator's tests run instead of `vmi-step`
//! (`scripts/test-step.sh`), and what it recorded.
//!
//! Each test gets its own directory: the script file says what each step
//! does (succeed, sleep, fail, fail N times, hang, run kubectl), and every
//! run appends a line to `runs.log`, so tests can count runs exactly.

use std::path::{Path, PathBuf};

use crate::SimError;
use crate::children;

/// The script file, next to this crate's sources.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-step.sh");

/// One recorded run of the test step program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRun {
    /// The step it ran.
    pub step: String,
    /// Whether it was the step's undo.
    pub undo: bool,
    /// The attempt the orchestrator gave it.
    pub attempt: u32,
}

/// A directory with the behaviour of each step and the record of runs.
pub struct TestSteps {
    dir: PathBuf,
}

impl TestSteps {
    /// A fresh directory where every step succeeds.
    pub fn new() -> Result<TestSteps, SimError> {
        let dir = children::temp_dir("steps")?;
        std::fs::write(dir.join("script"), "")
            .map_err(|e| SimError::Setup(format!("cannot write the step script: {e}")))?;
        Ok(TestSteps { dir })
    }

    /// The orchestrator's `--step-command` that runs the program.
    pub fn command(&self) -> String {
        format!("sh {SCRIPT}")
    }

    /// The environment the kubelet stand-in adds so the program finds its
    /// directory (and `kubectl`, from `tools_bin`).
    pub fn env(&self, tools_bin: &Path) -> Vec<(String, String)> {
        let path = format!(
            "{}:{}",
            tools_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        vec![
            ("VMI_TEST_DIR".to_owned(), self.dir.display().to_string()),
            ("PATH".to_owned(), path),
        ]
    }

    /// Makes `step` (or its undo) do `action` from now on, e.g. `fail-times 2`.
    pub fn set(&self, step: &str, undo: bool, action: &str) -> Result<(), SimError> {
        let path = self.dir.join("script");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let kind = if undo { "undo" } else { "run" };
        let mut lines: Vec<String> = old
            .lines()
            .filter(|l| {
                let mut words = l.split_whitespace();
                !(words.next() == Some(step) && words.next() == Some(kind))
            })
            .map(str::to_owned)
            .collect();
        lines.push(format!("{step} {kind} {action}"));
        std::fs::write(&path, lines.join("\n") + "\n")
            .map_err(|e| SimError::Setup(format!("cannot write the step script: {e}")))
    }

    /// Every run so far, in order.
    pub fn runs(&self) -> Vec<StepRun> {
        std::fs::read_to_string(self.dir.join("runs.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                Some(StepRun {
                    step: words.next()?.to_owned(),
                    undo: words.next()? == "undo",
                    attempt: words.next()?.parse().ok()?,
                })
            })
            .collect()
    }
}
