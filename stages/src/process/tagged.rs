//! Every process a run starts carries the run's tag in its environment
//! (`TUNEFLOW_RUNNER=PID-START`), set before it is spawned and inherited by
//! everything it starts. So when a run dies, even in the instant between
//! spawning a command and recording its group, its watchdog (and the next
//! run) can still find all that is left of it: every live process whose
//! environment holds the tag, in whatever process group.

use std::time::Duration;

/// The environment variable holding a run's tag.
pub const VAR: &str = "TUNEFLOW_RUNNER";

/// The tag of runner `pid` that started at `start` (clock ticks after
/// boot, so a reused pid has another tag).
pub fn tag(pid: u32, start: u64) -> String {
    format!("{pid}-{start}")
}

/// This process's tag.
pub fn own_tag() -> String {
    let me = std::process::id();
    tag(me, super::start_time(me).unwrap_or(0))
}

/// The process groups of the live processes whose environment holds
/// `VAR=tag` (zombies and this process's own group left out).
pub fn groups_tagged(tag: &str) -> Vec<u32> {
    let needle = format!("{VAR}={tag}");
    let own = own_group();
    let mut groups = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
        let mut f = rest.split_whitespace();
        let state = f.next();
        let group = f.nth(1).and_then(|g| g.parse::<u32>().ok());
        if let Some(g) = group.filter(|g| *g > 1 && Some(*g) != own && state != Some("Z")) {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    groups
}

/// Ends every group holding a process tagged `tag` (SIGTERM, then SIGKILL),
/// looking again until none is left (a process may fork while its group
/// is ended), at most a few rounds. Returns the groups ended.
pub fn end_tagged(tag: &str) -> Vec<u32> {
    let mut ended = Vec::new();
    for _ in 0..5 {
        let groups = groups_tagged(tag);
        if groups.is_empty() {
            break;
        }
        for &g in &groups {
            super::kill_group(g, libc::SIGTERM);
        }
        for &g in &groups {
            super::wait_group_gone(g, Duration::from_millis(500));
            super::kill_group(g, libc::SIGKILL);
            super::wait_group_gone(g, Duration::from_secs(5));
            if !ended.contains(&g) {
                ended.push(g);
            }
        }
    }
    ended
}

#[expect(unsafe_code, reason = "getpgrp(2) has no wrapper in std")]
fn own_group() -> Option<u32> {
    // SAFETY: getpgrp only returns this process's group id.
    u32::try_from(unsafe { libc::getpgrp() }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_process_is_found_in_its_own_group_and_ended() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let t = tag(4_000_000, std::process::id().into());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(VAR, &t)
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !groups_tagged(&t).contains(&pid) {
            assert!(std::time::Instant::now() < deadline, "not found");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!groups_tagged("another-tag").contains(&pid));
        assert_eq!(end_tagged(&t), vec![pid]);
        assert!(child.wait().unwrap().signal().is_some());
        assert!(groups_tagged(&t).is_empty());
    }
}
