//! `vmi-step <step> --vmi namespace/name [--kubeconfig PATH]`
//!
//! Exit status: 0 when the step is done and verified; 1 when it failed (the
//! cause is the last log line); 2 for a bad command line or pipeline.

use std::process::ExitCode;

use vmi_api::Pipeline;
use vmi_step_runner::{cli, logging, run};

fn main() -> ExitCode {
    let pipeline = match Pipeline::vcenter_migration() {
        Ok(pipeline) => pipeline,
        Err(err) => {
            eprintln!("vmi-step: {err}");
            return ExitCode::from(2);
        }
    };
    let matches = cli::command(&pipeline).get_matches();
    let Some(invocation) = cli::invocation(&matches) else {
        eprintln!("vmi-step: the command line could not be read; see vmi-step --help");
        return ExitCode::from(2);
    };
    logging::init(invocation.log_format);
    tracing::info!(vmi = %invocation.vmi, action = ?invocation.action, "vmi-step starting");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("vmi-step: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&invocation)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(vmi = %invocation.vmi, "{err}");
            ExitCode::FAILURE
        }
    }
}
