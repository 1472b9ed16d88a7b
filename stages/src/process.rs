//! Child processes of stages (commands, the torch worker): each runs in a
//! process group of its own, so stopping a stage stops everything it
//! started. The group's leader dies with the runner (`PR_SET_PDEATHSIG`),
//! and each running group is recorded in a registry folder, so that after
//! a `kill -9` of the runner the next run ends whatever the group left
//! running (background processes) before anything else runs: two runs of
//! the same cache never write the same outputs at once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A spawned process group, recorded in its registry until dropped.
pub struct Spawned {
    /// The group's leader.
    pub child: Child,
    record: Option<PathBuf>,
}

impl Drop for Spawned {
    /// Forgets the record once the whole group is gone; a group that left
    /// processes behind stays recorded, and the next run ends them.
    fn drop(&mut self) {
        if let Some(r) = &self.record {
            if !group_alive(self.child.id()) {
                let _ = std::fs::remove_file(r);
            }
        }
    }
}

/// Spawns `cmd` as the leader of a new process group that gets SIGKILL when
/// this process dies, and records the group in `registry` (a folder).
pub fn spawn_group(cmd: &mut Command, registry: Option<&Path>) -> std::io::Result<Spawned> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    cmd.process_group(0);
    die_with_parent(cmd, parent);
    let child = cmd.spawn()?;
    let record = registry.and_then(|dir| record_group(dir, child.id()).ok());
    Ok(Spawned { child, record })
}

#[expect(unsafe_code, reason = "pre_exec runs prctl(2) in the child")]
fn die_with_parent(cmd: &mut Command, parent: u32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only makes async-signal-safe calls (prctl,
    // getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before the prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// `/proc/<pid>/stat` field 22: when the process started, in clock ticks
/// after boot. With the boot id, it tells a reused pid from the original.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn record_group(dir: &Path, pgid: u32) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{pgid}"));
    let start = start_time(pgid).unwrap_or(0);
    let me = std::process::id();
    let my_start = start_time(me).unwrap_or(0);
    std::fs::write(
        &path,
        format!("{pgid} {start} {} {me} {my_start}\n", boot_id()),
    )?;
    Ok(path)
}

/// Whether the process `pid` that started at `start` still runs.
fn alive_since(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Ends every process group that a run killed before it could clean up
/// left running (SIGTERM, then SIGKILL), waits until they are gone, and
/// forgets their records. Returns what was ended, for a warning. Call it
/// holding the cache lock, before anything runs.
pub fn end_leftovers(registry: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(registry) else {
        return Vec::new();
    };
    let boot = boot_id();
    let mut ended = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let fields: Vec<&str> = text.split_whitespace().collect();
        // The group of a runner that still runs (a run of another cache on
        // the same records, or a lock deleted by hand) is not a leftover.
        if let [_, _, _, runner, since] = fields[..] {
            if let (Ok(runner), Ok(since)) = (runner.parse::<u32>(), since.parse::<u64>()) {
                if alive_since(runner, since) {
                    continue;
                }
            }
        }
        if let [pgid, start, b, ..] = fields[..] {
            if let (Ok(pgid), Ok(start)) = (pgid.parse::<u32>(), start.parse::<u64>()) {
                // A live leader with another start time is a reused pid: the
                // kernel never reuses a pid while a group of that id lives.
                let reused = start_time(pgid).is_some_and(|s| s != start);
                if b == boot && !reused && group_alive(pgid) {
                    kill_group(pgid, libc::SIGTERM);
                    wait_group_gone(pgid, Duration::from_millis(500));
                    kill_group(pgid, libc::SIGKILL);
                    wait_group_gone(pgid, Duration::from_secs(5));
                    ended.push(format!("process group {pgid}"));
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    ended
}

/// Waits until no process of the group is left (killed processes take a
/// moment to exit on a loaded machine), at most `limit`.
pub fn wait_group_gone(pgid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while group_alive(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a live (not zombie) process is in the group. Zombies are left
/// out: orphans are reaped by PID 1, which in some containers never does.
pub fn group_alive(pgid: u32) -> bool {
    // No process at all in the group (the common case once a command has
    // exited and been reaped): no need to read every process's stat.
    if !group_exists(pgid) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // Fields after the parenthesised command: state, ppid, pgrp, ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        group == Some(pgid) && state != Some("Z")
    })
}

/// Whether any process, zombies included, is in group `pgid`.
#[expect(unsafe_code, reason = "killpg(2) has no safe wrapper in std")]
fn group_exists(pgid: u32) -> bool {
    // SAFETY: signal 0 only checks that the group exists and may be
    // signalled; it sends nothing.
    let r = unsafe { libc::killpg(pgid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Sends `signal` to the process group `pid` leads.
#[expect(unsafe_code, reason = "killpg(2) has no safe wrapper in std")]
pub fn kill_group(pid: u32, signal: i32) {
    // SAFETY: killpg only sends a signal; a stale pgid yields ESRCH.
    unsafe {
        libc::killpg(pid as libc::pid_t, signal);
    }
}
