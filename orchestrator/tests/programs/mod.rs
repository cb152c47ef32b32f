//! The real `vmi-orchestrator` and `vmi-step` programs, for the tests that
//! run whole migrations with them.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use vmi_sim::migration::Programs;

/// `vmi-orchestrator` and `vmi-step`, built next to this package's binaries.
pub fn built() -> Programs {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "vmi-step-runner",
            "--bin",
            "vmi-step",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "vmi-step builds");
    let orchestrator = PathBuf::from(env!("CARGO_BIN_EXE_vmi-orchestrator"));
    Programs {
        step: orchestrator.with_file_name("vmi-step"),
        orchestrator,
    }
}

/// [`built`], then copied to a directory of their own: a rebuild while a
/// long series runs must not change the programs half-way.
pub fn copied(label: &str) -> Programs {
    let built = built();
    let dir = vmi_sim::children::temp_dir(label).unwrap();
    let copy = |from: PathBuf| {
        let to = dir.join(from.file_name().unwrap());
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        to
    };
    Programs {
        step: copy(built.step),
        orchestrator: copy(built.orchestrator),
    }
}
