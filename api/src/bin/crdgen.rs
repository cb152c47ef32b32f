//! Prints the `VSphereMigrationInfra` CRD as YAML.
//!
//! `cargo run -q -p vmi-api --bin crdgen > deploy/crds/vspheremigrationinfra.yaml`

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match vmi_api::crd::crd_yaml() {
        Ok(yaml) => match std::io::stdout().write_all(yaml.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("crdgen: cannot write the CRD to stdout: {err}");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            eprintln!("crdgen: {err}");
            ExitCode::FAILURE
        }
    }
}
