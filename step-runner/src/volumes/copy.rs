//! Copy mode: a disk's files streamed from the source datastore to the
//! target datastore over the datastore HTTP file interface, each verified by
//! size and SHA-256 read back from the target. Cold only (the workloads are
//! stopped), and it works between any two vCenters whose datastores expose
//! files (VMFS, NFS).

use crate::context::StepError;
use crate::vsphere::VCenter;
use crate::vsphere::datastore::{DatastoreFile, Transfer};

use super::journal::DiskFile;

/// How much of a disk the pipe between download and upload buffers.
const PIPE: usize = 1 << 20;

/// The files of a disk whose descriptor is `descriptor`: the descriptor and,
/// when the datastore keeps it as a file, its `-flat` extent.
pub fn extent_of(descriptor: &DatastoreFile) -> DatastoreFile {
    let stem = descriptor
        .path
        .strip_suffix(".vmdk")
        .unwrap_or(&descriptor.path);
    DatastoreFile {
        path: format!("{stem}-flat.vmdk"),
        ..descriptor.clone()
    }
}

/// The SHA-256 of `file` as `vcenter` serves it now.
async fn read_back(vcenter: &VCenter, file: &DatastoreFile) -> Result<Transfer, StepError> {
    let mut sink = tokio::io::sink();
    Ok(vcenter.download(file, &mut sink).await?)
}

/// Streams `from` on `source` to `to` on `target` without holding the disk
/// in memory or on local disk.
async fn stream(
    source: &VCenter,
    from: &DatastoreFile,
    target: &VCenter,
    to: &DatastoreFile,
    length: u64,
) -> Result<Transfer, StepError> {
    let (mut writer, reader) = tokio::io::duplex(PIPE);
    let download = async {
        let result = source.download(from, &mut writer).await;
        drop(writer);
        result
    };
    let (read, written) = tokio::join!(download, target.upload(to, reader, length));
    let read = read?;
    let written = written?;
    if read != written {
        return Err(StepError::Unverified(format!(
            "copying {from} to {to}: read {} bytes (sha256 {}) but sent {} bytes (sha256 {}); the source is kept",
            read.bytes, read.sha256, written.bytes, written.sha256
        )));
    }
    Ok(read)
}

/// Copies one file unless `done` shows an earlier run already copied it
/// (checked again on the target), and verifies the copy.
async fn copy_file(
    source: &VCenter,
    from: &DatastoreFile,
    target: &VCenter,
    to: &DatastoreFile,
    length: u64,
    done: Option<&DiskFile>,
) -> Result<DiskFile, StepError> {
    if let Some(done) = done
        && done.bytes == length
        && target.file_size(to).await? == Some(length)
        && read_back(target, to).await?.sha256 == done.sha256
    {
        return Ok(done.clone());
    }
    let copied = stream(source, from, target, to, length).await?;
    let size = target.file_size(to).await?;
    let back = read_back(target, to).await?;
    if size != Some(copied.bytes) || back.sha256 != copied.sha256 {
        return Err(StepError::Unverified(format!(
            "the copy of {from} at {to} on vCenter {} does not match: {} bytes, sha256 {} there; {} bytes, sha256 {} read from the source; the source is kept, delete this step's Job to copy again",
            target.server(),
            size.map_or_else(|| "no file".into(), |s| s.to_string()),
            back.sha256,
            copied.bytes,
            copied.sha256
        )));
    }
    Ok(DiskFile {
        path: to.datastore_path(),
        bytes: copied.bytes,
        sha256: copied.sha256,
    })
}

/// Copies the disk whose descriptor is `from` to `to` (same layout), with
/// its extent when there is one, and returns each file copied with its size
/// and checksum. `done` are the files an earlier run recorded.
pub async fn copy_disk(
    source: &VCenter,
    from: &DatastoreFile,
    target: &VCenter,
    to: &DatastoreFile,
    done: &[DiskFile],
) -> Result<Vec<DiskFile>, StepError> {
    let mut copied = Vec::new();
    let files = [(from.clone(), to.clone()), (extent_of(from), extent_of(to))];
    for (index, (from, to)) in files.iter().enumerate() {
        let Some(length) = source.file_size(from).await? else {
            if index == 0 {
                return Err(StepError::Refused(format!(
                    "{from} is not on vCenter {}: the disk's descriptor is missing; nothing was copied",
                    source.server()
                )));
            }
            continue; // no separate extent on this datastore
        };
        let previous = done.iter().find(|f| f.path == to.datastore_path());
        copied.push(copy_file(source, from, target, to, length, previous).await?);
    }
    Ok(copied)
}
