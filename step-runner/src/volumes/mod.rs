//! Moving vSphere CSI volumes to the target vCenter (step 13, DESIGN §7):
//! discovery, the journal, stopping and restarting workloads, the detach
//! check, the two ways a disk moves (Copy, Relocate), registration on the
//! target and the rebind of the PersistentVolume.

pub mod copy;
pub mod detach;
pub mod discover;
pub mod journal;
pub mod locate;
pub mod rebind;
pub mod register;
pub mod relocate_mode;
pub mod volume_info;
pub mod workloads;

pub use discover::{CSI_DRIVER, Candidate, Disposition, discover};
pub use journal::{Entry, Journal, Owner, State};
