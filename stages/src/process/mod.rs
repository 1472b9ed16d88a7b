//! Child processes of stages (commands, the torch worker): each runs in a
//! process group of its own, so stopping a stage stops everything it
//! started. The group's leader dies with the runner (`PR_SET_PDEATHSIG`),
//! and each running group is recorded in a registry folder, so that after
//! a `kill -9` of the runner the next run ends whatever the group left
//! running (background processes) before anything else runs: two runs of
//! the same cache never write the same outputs at once.
//!
//! The registry holds one file per runner process, named by its pid: a
//! first line `runner PID START BOOT`, then `+ PGID START` when a group is
//! spawned and `- PGID` once it is gone. Lines are appended (one `write`
//! each), so a stage costs no new file: thousands of quick stages made a
//! file per group expensive on ext4.

pub mod tagged;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A spawned process group, recorded in its registry until dropped.
pub struct Spawned {
    /// The group's leader.
    pub child: Child,
    record: Option<PathBuf>,
}

impl Drop for Spawned {
    /// Forgets the group once it is wholly gone; a group that left
    /// processes behind stays recorded, and the next run ends them.
    fn drop(&mut self) {
        if let Some(file) = &self.record {
            let pgid = self.child.id();
            if !group_alive(pgid) {
                let _ = append_line(file, &format!("- {pgid}\n"));
            }
        }
    }
}

/// Spawns `cmd` as the leader of a new process group that ends when this
/// process dies, and records the group in `registry` (a folder).
///
/// With a registry watched by [`start_watchdog`], the watchdog ends the
/// whole group when this process dies, and the child is spawned with
/// `posix_spawn` (std's fast path). Otherwise the leader gets SIGKILL from
/// the kernel (`PR_SET_PDEATHSIG`), which needs a `pre_exec` hook and so a
/// full `fork` of this process: measured at about 1.5 ms a stage.
pub fn spawn_group(cmd: &mut Command, registry: Option<&Path>) -> std::io::Result<Spawned> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    cmd.process_group(0);
    if let Some(dir) = registry {
        cmd.env(tagged::VAR, tagged::own_tag());
        registry_file(dir)?;
    }
    let watched = registry.is_some_and(is_watched);
    if !watched {
        die_with_parent(cmd, parent);
    }
    let child = cmd.spawn()?;
    let record = registry.and_then(|dir| record_group(dir, child.id()).ok());
    Ok(Spawned { child, record })
}

/// The registry folders a watchdog of this process watches.
static WATCHED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn is_watched(dir: &Path) -> bool {
    WATCHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|d| d == dir)
}

/// A watchdog process: it waits for the end of a pipe that only this
/// process holds, so when this process ends (a `kill -9` included) it
/// ends every group this process recorded in the registry and left
/// running, processes of the group that the leader started included.
pub struct Watchdog {
    child: Option<Child>,
    pipe: Option<std::process::ChildStdin>,
}

impl Drop for Watchdog {
    /// Stops watching: later spawns of this process fall back to the
    /// kernel's death signal. The pipe closes as the fields drop; the
    /// watchdog then ends whatever the run left running, and exits.
    fn drop(&mut self) {
        WATCHED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        drop(self.pipe.take());
        // Reap it when it has ended its groups, so that a process running
        // many sessions (a sweep) does not collect zombies.
        if let Some(mut child) = self.child.take() {
            let _ = std::thread::Builder::new()
                .name("watchdog-reaper".into())
                .spawn(move || child.wait());
        }
    }
}

/// Starts `exe watch_args... FILE` (a command that calls
/// [`watch_groups`]) for this process's file in `registry`.
pub fn start_watchdog(
    exe: &Path,
    watch_args: &[&str],
    registry: &Path,
) -> std::io::Result<Watchdog> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(registry)?;
    let file = registry.join(format!("{}", std::process::id()));
    let mut child = Command::new(exe)
        .args(watch_args)
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        // Its own group: a Ctrl-C at the terminal does not reach it.
        .process_group(0)
        .spawn()?;
    let pipe = child.stdin.take().expect("stdin is piped");
    WATCHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(registry.to_path_buf());
    Ok(Watchdog {
        child: Some(child),
        pipe: Some(pipe),
    })
}

/// The watchdog's side: blocks until its stdin ends (the runner is gone),
/// then ends every group still open in the runner's `file` and removes it.
pub fn watch_groups(file: &Path) -> Vec<String> {
    use std::io::Read;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let ended = parse_registry(&text).map_or_else(Vec::new, |reg| end_runner(&reg));
    let _ = std::fs::remove_file(file);
    ended
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
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Appends `+ PGID START` to this runner's file in `dir` (written with its
/// header line first if new) and returns the file.
fn record_group(dir: &Path, pgid: u32) -> std::io::Result<PathBuf> {
    let path = registry_file(dir)?;
    let start = start_time(pgid).unwrap_or(0);
    append_line(&path, &format!("+ {pgid} {start}\n"))?;
    Ok(path)
}

/// This process's file in `dir`, written with its header line (which holds
/// the run's tag) the first time: before anything is spawned, so a run
/// killed in the instant after a spawn still left its tag behind.
fn registry_file(dir: &Path) -> std::io::Result<PathBuf> {
    static STARTED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let me = std::process::id();
    let path = dir.join(format!("{me}"));
    let mut started = STARTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !started.contains(&path) {
        // A file of this name from an earlier runner with the same pid was
        // ended by `end_leftovers` before this run spawned anything.
        std::fs::create_dir_all(dir)?;
        std::fs::write(&path, header(me))?;
        started.push(path.clone());
    }
    Ok(path)
}

/// The first line of runner `pid`'s file (this process's).
fn header(pid: u32) -> String {
    format!(
        "runner {pid} {} {}\n",
        start_time(pid).unwrap_or(0),
        boot_id()
    )
}

fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(line.as_bytes())
}

/// A registry file: its runner (pid, start time), the groups it holds
/// (spawned, never seen gone) with their start times, and its boot id.
type Registry<'a> = ((u32, u64), Vec<(u32, u64)>, &'a str);

fn parse_registry(text: &str) -> Option<Registry<'_>> {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next()?.split_whitespace().collect();
    let ["runner", runner, since, boot] = head[..] else {
        return None;
    };
    let runner = (runner.parse().ok()?, since.parse().ok()?);
    let mut groups: Vec<(u32, u64)> = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[..] {
            ["+", pgid, start] => {
                if let (Ok(p), Ok(s)) = (pgid.parse(), start.parse()) {
                    groups.push((p, s));
                }
            }
            ["-", pgid] => {
                if let Ok(p) = pgid.parse::<u32>() {
                    groups.retain(|(g, _)| *g != p);
                }
            }
            _ => {}
        }
    }
    Some((runner, groups, boot))
}

/// Whether a registry file's runner still runs (a run of another cache on
/// the same records, or a lock deleted by hand: its groups are not
/// leftovers).
fn runner_alive(reg: &Registry<'_>) -> bool {
    let (runner, since) = reg.0;
    alive_since(runner, since)
}

/// Ends what a gone runner left: its open groups, then whatever still
/// carries its tag.
fn end_runner(reg: &Registry<'_>) -> Vec<String> {
    let ((pid, start), groups, boot) = reg;
    let mut ended = end_groups(groups, boot);
    ended.extend(end_tagged_of(*pid, *start));
    ended
}

/// Whether the process `pid` that started at `start` still runs.
fn alive_since(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Ends each (group, start time) whose leader is still the process that
/// was recorded (SIGTERM, then SIGKILL); returns what was ended.
fn end_groups(groups: &[(u32, u64)], file_boot: &str) -> Vec<String> {
    let boot = boot_id();
    let mut ended = Vec::new();
    for &(pgid, start) in groups {
        // A live leader with another start time is a reused pid: the
        // kernel never reuses a pid while a group of that id lives.
        let reused = start_time(pgid).is_some_and(|s| s != start);
        if file_boot == boot && !reused && group_alive(pgid) {
            kill_group(pgid, libc::SIGTERM);
            wait_group_gone(pgid, Duration::from_millis(500));
            kill_group(pgid, libc::SIGKILL);
            wait_group_gone(pgid, Duration::from_secs(5));
            ended.push(format!("process group {pgid}"));
        }
    }
    ended
}

/// Ends what is left of runner `pid` (started at `start`) by its tag: a
/// process it spawned but never recorded, or one a recorded group's
/// process moved to a group of its own.
fn end_tagged_of(pid: u32, start: u64) -> Vec<String> {
    tagged::end_tagged(&tagged::tag(pid, start))
        .into_iter()
        .map(|g| format!("process group {g} (by the run's tag)"))
        .collect()
}

/// Ends every process group that a run killed before it could clean up
/// left running (SIGTERM, then SIGKILL), waits until they are gone, and
/// forgets their records. Returns what was ended, for a warning. Call it
/// holding the cache lock, before anything runs.
pub fn end_leftovers(registry: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(registry) else {
        return Vec::new();
    };
    let mut ended = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        match parse_registry(&text) {
            // A live runner's file stays; anything else is not ours.
            Some(reg) if runner_alive(&reg) => continue,
            Some(reg) => ended.extend(end_runner(&reg)),
            None => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `end_leftovers` ends of a registry file: its open groups and
    /// boot id, unless its runner still runs.
    fn leftover_groups(text: &str) -> Option<(Vec<(u32, u64)>, &str)> {
        let reg = parse_registry(text).filter(|r| !runner_alive(r))?;
        Some((reg.1, reg.2))
    }

    #[test]
    fn a_dead_runners_open_groups_are_its_leftovers() {
        let text = "runner 4000000 1 boot\n+ 11 5\n+ 12 6\n- 11\n+ 13 7\n";
        let (groups, boot) = leftover_groups(text).unwrap();
        assert_eq!(groups, vec![(12, 6), (13, 7)]);
        assert_eq!(boot, "boot");
    }

    #[test]
    fn a_live_runner_has_no_leftovers_and_garbage_is_ignored() {
        let me = std::process::id();
        let live = format!("{}+ 11 5\n", header(me));
        assert!(leftover_groups(&live).is_none());
        assert!(leftover_groups("").is_none());
        assert!(leftover_groups("11 5 boot 1 2\n").is_none());
        let (groups, _) = leftover_groups("runner 4000000 1 b\n+ x y\n-\n+ 9 9\n").unwrap();
        assert_eq!(groups, vec![(9, 9)]);
    }

    #[test]
    fn spawned_groups_are_appended_and_closed_in_one_file() {
        let dir = std::env::temp_dir().join(format!("tf-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for _ in 0..2 {
            let mut s = spawn_group(Command::new("true").arg("x"), Some(&dir)).unwrap();
            s.child.wait().unwrap();
            drop(s);
        }
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one file per runner");
        let text = std::fs::read_to_string(files[0].path()).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("+ ")).count(), 2);
        assert_eq!(text.lines().filter(|l| l.starts_with("- ")).count(), 2);
        // This runner is alive: nothing of it is ended or removed.
        assert!(end_leftovers(&dir).is_empty());
        assert!(files[0].path().exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The largest resident set any process a stage waited for reached, in
/// KiB (`ru_maxrss` of each reaped child: the child and the descendants
/// it waited for). Shared by the stage's context and whoever reads it.
#[derive(Debug, Clone, Default)]
pub struct PeakMemory(Arc<AtomicU64>);

impl PeakMemory {
    /// Records a process's peak.
    pub fn record(&self, kib: u64) {
        self.0.fetch_max(kib, Ordering::Relaxed);
    }

    /// The peak so far; `None` when no process was measured.
    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&k| k > 0)
    }
}

/// [`Child::try_wait`], measuring the child's peak memory into `peak`
/// when it has ended. Once this has returned a status the child is reaped:
/// do not wait for it again.
#[expect(unsafe_code, reason = "wait4(2) has no safe wrapper in std")]
pub fn try_wait_measured(child: &Child, peak: &PeakMemory) -> std::io::Result<Option<ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    // SAFETY: both pointers are to live locals of the right types.
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    match r {
        0 => Ok(None),
        -1 => Err(std::io::Error::last_os_error()),
        _ => {
            // Linux reports ru_maxrss in KiB.
            peak.record(u64::try_from(usage.ru_maxrss).unwrap_or(0));
            Ok(Some(ExitStatus::from_raw(status)))
        }
    }
}
