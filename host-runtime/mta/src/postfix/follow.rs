//! Following a log file the way `tail -F` does, with a position that can be saved: complete lines
//! only, across rotation (rename and create, as logrotate and `postfix logrotate` do, or
//! copy-and-truncate), and across restarts of the daemon.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::state::LogPosition;

/// The most bytes read in one go; a longer line is cut at this length.
const MAX_CHUNK: usize = 1 << 20;

/// Lines read, and the position after them (saved together with their effects).
#[derive(Debug, Default)]
pub struct Chunk {
    /// Complete lines, without their newlines.
    pub lines: Vec<String>,
    /// Where the next read starts once these lines are dealt with.
    pub position: Option<LogPosition>,
    /// Things the operator must know (a rotated file that is gone, a truncation).
    pub warnings: Vec<String>,
}

/// A log file being followed.
pub struct LogFollower {
    path: PathBuf,
    /// The file being read, its inode, and the committed offset in it.
    current: Option<(File, u64)>,
    offset: u64,
    /// Where to resume, until the file is opened.
    resume: Option<LogPosition>,
    /// Whether a file met for the first time (no saved position) is read from its end.
    start_at_end: bool,
}

impl LogFollower {
    /// Follows `path`, resuming at `saved` when there is one; otherwise from the end of the file
    /// as it is now (`start_at_end`) or from its beginning.
    #[must_use]
    pub fn new(path: &Path, saved: Option<LogPosition>, start_at_end: bool) -> Self {
        Self {
            path: path.to_owned(),
            current: None,
            offset: 0,
            resume: saved,
            start_at_end,
        }
    }

    /// The followed path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what was appended since the last committed position. Call [`commit`](Self::commit)
    /// with the chunk's position once its lines are dealt with; until then the next read starts
    /// at the same place again.
    ///
    /// # Errors
    ///
    /// When the file exists but cannot be read.
    pub fn read(&mut self) -> io::Result<Chunk> {
        let mut chunk = Chunk::default();
        if self.current.is_none() && !self.open(&mut chunk)? {
            // A file that appears later is new: all of it is to be read.
            self.start_at_end = false;
            return Ok(chunk);
        }
        let Some((file, inode)) = self.current.as_mut() else {
            return Ok(chunk);
        };
        let inode = *inode;
        let length = file.metadata()?.len();
        if length < self.offset {
            chunk.warnings.push(format!(
                "{} shrank from {} to {length} bytes (copied and truncated?): reading it again from the start",
                self.path.display(),
                self.offset
            ));
            self.offset = 0;
        }
        let (lines, end) = read_lines(file, self.offset, false)?;
        if !lines.is_empty() {
            chunk.lines.extend(lines);
            chunk.position = Some(LogPosition { inode, offset: end });
            return Ok(chunk);
        }
        if !chunk.lines.is_empty() || chunk.position.is_some() {
            // Just opened (lines of a rotated file drained, or a start at the end): save that first.
            return Ok(chunk);
        }
        // Nothing new here: has the file been renamed away and replaced?
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.ino() != inode => {
                // The old file is complete now: its last line may lack a newline.
                let (lines, _) = read_lines(file, self.offset, true)?;
                chunk.lines.extend(lines);
                self.current = None;
                self.start_at_end = false;
                self.open(&mut chunk)?;
                chunk.position = self.current.as_ref().map(|(_, inode)| LogPosition {
                    inode: *inode,
                    offset: 0,
                });
            }
            _ => {}
        }
        Ok(chunk)
    }

    /// Records that everything up to `position` is dealt with.
    pub fn commit(&mut self, position: LogPosition) {
        if self
            .current
            .as_ref()
            .is_some_and(|(_, inode)| *inode == position.inode)
        {
            self.offset = position.offset;
        }
    }

    /// Opens the file at `path`; false when it does not exist (yet). After a restart that
    /// missed a rotation, the rotated file is opened instead, at the saved offset: `read` goes
    /// through it chunk by chunk and moves on to `path` as after any rotation.
    fn open(&mut self, chunk: &mut Chunk) -> io::Result<bool> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let inode = meta.ino();
        let (file, inode, offset) = match self.resume.take() {
            Some(saved) if saved.inode == inode => (file, inode, saved.offset),
            Some(saved) => match self.find_rotated(saved.inode) {
                Some(old) => (File::open(&old)?, saved.inode, saved.offset),
                None => {
                    chunk.warnings.push(format!(
                        "{} was rotated while the daemon was stopped and the old file is gone: \
                         lines written after its offset {} were not read",
                        self.path.display(),
                        saved.offset
                    ));
                    chunk.position = Some(LogPosition { inode, offset: 0 });
                    (file, inode, 0)
                }
            },
            None if self.start_at_end => {
                chunk.position = Some(LogPosition {
                    inode,
                    offset: meta.len(),
                });
                (file, inode, meta.len())
            }
            None => (file, inode, 0),
        };
        self.offset = offset;
        self.current = Some((file, inode));
        Ok(true)
    }

    /// A file next to the log whose name starts with the log's and whose inode is `inode`.
    fn find_rotated(&self, inode: u64) -> Option<PathBuf> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or_else(|| Path::new("."));
        let name = self.path.file_name()?.to_str()?;
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .find(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(name) && n != name)
                    && entry.metadata().is_ok_and(|m| m.ino() == inode)
            })
            .map(|entry| entry.path())
    }
}

/// Complete lines of `file` from `offset`, and the offset after the last one; with `to_end`, a
/// last line without a newline counts too.
fn read_lines(file: &mut File, offset: u64, to_end: bool) -> io::Result<(Vec<String>, u64)> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buffer = Vec::new();
    file.take(MAX_CHUNK as u64).read_to_end(&mut buffer)?;
    let complete = match buffer.iter().rposition(|&b| b == b'\n') {
        Some(last) => last + 1,
        // A line longer than a whole chunk: cut it rather than stall.
        None if buffer.len() == MAX_CHUNK || to_end => buffer.len(),
        None => 0,
    };
    let lines = buffer[..complete]
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect();
    Ok((lines, offset + complete as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    fn read_all(follower: &mut LogFollower) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let chunk = follower.read().unwrap();
            let done = chunk.lines.is_empty() && chunk.position.is_none();
            lines.extend(chunk.lines);
            if let Some(position) = chunk.position {
                follower.commit(position);
            }
            if done {
                return lines;
            }
        }
    }

    #[test]
    fn only_complete_lines_and_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("maillog");
        let mut follower = LogFollower::new(&log, None, false);
        assert!(read_all(&mut follower).is_empty(), "no file yet");
        append(&log, "one\ntw");
        assert_eq!(read_all(&mut follower), ["one"]);
        append(&log, "o\nthree\n");
        assert_eq!(read_all(&mut follower), ["two", "three"]);
        assert!(read_all(&mut follower).is_empty());
    }

    #[test]
    fn an_uncommitted_chunk_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("maillog");
        append(&log, "one\n");
        let mut follower = LogFollower::new(&log, None, false);
        assert_eq!(follower.read().unwrap().lines, ["one"]);
        assert_eq!(read_all(&mut follower), ["one"]);
    }

    #[test]
    fn rotation_by_rename_finishes_the_old_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("maillog");
        append(&log, "one\n");
        let mut follower = LogFollower::new(&log, None, false);
        assert_eq!(read_all(&mut follower), ["one"]);
        append(&log, "two\nlast without newline");
        std::fs::rename(&log, dir.path().join("maillog.1")).unwrap();
        append(&log, "three\n");
        assert_eq!(
            read_all(&mut follower),
            ["two", "last without newline", "three"]
        );
    }

    #[test]
    fn a_restart_after_rotation_drains_the_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("maillog");
        append(&log, "one\n");
        let mut follower = LogFollower::new(&log, None, false);
        assert_eq!(read_all(&mut follower), ["one"]);
        let saved = LogPosition {
            inode: std::fs::metadata(&log).unwrap().ino(),
            offset: 4,
        };
        drop(follower);
        append(&log, "two\n");
        std::fs::rename(&log, dir.path().join("maillog.20261130-120000")).unwrap();
        append(&log, "three\n");
        let mut resumed = LogFollower::new(&log, Some(saved), true);
        assert_eq!(read_all(&mut resumed), ["two", "three"]);
    }

    #[test]
    fn a_restart_after_rotation_reads_a_backlog_longer_than_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("maillog");
        append(&log, "start\n");
        let saved = LogPosition {
            inode: std::fs::metadata(&log).unwrap().ino(),
            offset: 6,
        };
        let line = "x".repeat(99) + "\n";
        let backlog = 3 * MAX_CHUNK / line.len();
        append(&log, &line.repeat(backlog));
        std::fs::rename(&log, dir.path().join("maillog.1")).unwrap();
        append(&log, "after\n");
        let mut resumed = LogFollower::new(&log, Some(saved), true);
        let lines = read_all(&mut resumed);
        assert_eq!(lines.len(), backlog + 1);
        assert_eq!(lines.last().map(String::as_str), Some("after"));
    }

    #[test]
    fn a_restart_resumes_and_a_gone_rotated_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("maillog");
        append(&log, "one\ntwo\n");
        let inode = std::fs::metadata(&log).unwrap().ino();
        let mut resumed = LogFollower::new(&log, Some(LogPosition { inode, offset: 4 }), true);
        assert_eq!(read_all(&mut resumed), ["two"]);
        // Keep the old inode alive under a name that is not the log's, so that the new file
        // cannot reuse its number.
        std::fs::hard_link(&log, dir.path().join("kept")).unwrap();
        std::fs::remove_file(&log).unwrap();
        append(&log, "three\n");
        // Another inode and no rotated sibling holding the saved one.
        let mut resumed = LogFollower::new(&log, Some(LogPosition { inode, offset: 8 }), true);
        let chunk = resumed.read().unwrap();
        assert_eq!(chunk.warnings.len(), 1, "{:?}", chunk.warnings);
        assert_eq!(chunk.lines, ["three"]);
        resumed.commit(chunk.position.unwrap());
        assert!(read_all(&mut resumed).is_empty());
    }

    #[test]
    fn truncation_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("maillog");
        append(&log, "one\ntwo\n");
        let mut follower = LogFollower::new(&log, None, false);
        assert_eq!(read_all(&mut follower), ["one", "two"]);
        std::fs::write(&log, "").unwrap();
        append(&log, "x\n");
        let chunk = follower.read().unwrap();
        assert_eq!(chunk.lines, ["x"]);
        assert_eq!(chunk.warnings.len(), 1);
    }
}
