//! The `command` kind: any program, run with `sh -c` in the pipeline's
//! folder, with declared `deps` and `outs`.
//!
//! The command runs in its own process group, so cancelling the run stops
//! the shell and everything it started. Its stdout and stderr go to the
//! stage's log; the last lines of stderr are kept for the failure message.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::formats::artifact::ArtifactType;
use crate::params::{Diagnostic, ParamReader, Spanned, Table, ValueKind};
use crate::process::{spawn_group, Spawned};
use crate::stage::{BuildContext, Inputs, Kind, StageContext, StageDecl, StageError, StageOutputs};

const STDERR_TAIL_LINES: usize = 20;

/// A configured `command` stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Command {
    /// The command after `${params.x}` interpolation; `${stage}` and
    /// `${stage.output}` are replaced by paths when it runs.
    pub cmd: String,
    /// Declared outputs, relative to the pipeline folder.
    pub outs: Vec<String>,
    /// Environment variables whose values enter the key: name -> value
    /// when the pipeline was loaded (`None`: unset).
    pub env: BTreeMap<String, Option<String>>,
    /// Other stages' outputs it reads, as written (`extract.embeddings`,
    /// or `extract` for its only or main output).
    #[serde(default)]
    pub uses: Vec<String>,
    /// Outputs declared by name in an `outs` table, with their artifact
    /// type if any (checked at commit). Their paths are in `outs` too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub typed: BTreeMap<String, TypedOut>,
}

/// An output declared by name: `outs = { emb = { path = "out/emb", type =
/// "embeddings" } }` (or `emb = "out/emb"`, untyped).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TypedOut {
    /// Where it is written, relative to the pipeline folder.
    pub path: String,
    /// What it holds, checked when the stage commits.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ArtifactType>,
}

/// The `outs` param: a list of paths, or a table of named (typed) outputs.
fn read_outs(r: &ParamReader<'_>) -> (Vec<Spanned<String>>, BTreeMap<String, TypedOut>) {
    let Some(table) = r.raw("outs").and_then(|v| match &v.kind {
        ValueKind::Table(t) => Some((t, v.span.clone())),
        _ => None,
    }) else {
        return (r.str_list("outs"), BTreeMap::new());
    };
    let (table, span) = table;
    let outer = ParamReader::new(table, span);
    let mut paths = Vec::new();
    let mut typed = BTreeMap::new();
    for (name, v) in &table.entries {
        let out = match &v.kind {
            ValueKind::Table(_) => outer.nested(&name.value, |t| {
                let path = t.required_str("path", "the output's path");
                let kind = t.choice("type", &ArtifactType::NAMES);
                path.map(|p| (p, kind.and_then(|k| ArtifactType::parse(&k.value))))
            }),
            _ => Some(outer.str(&name.value).map(|p| (p, None))),
        };
        if let Some(Some((path, kind))) = out {
            let normal =
                crate::paths::normalize_rel(&path.value).unwrap_or_else(|_| path.value.clone());
            typed.insert(name.value.clone(), TypedOut { path: normal, kind });
            paths.push(path);
        }
    }
    for e in outer.finish() {
        r.error(e);
    }
    (paths, typed)
}

/// Builds a `command` stage from its params.
pub fn build(cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let cmd = r.required_str("cmd", "the shell command to run");
    let (uses_in_deps, deps): (Vec<_>, Vec<_>) = r
        .str_list("deps")
        .into_iter()
        .partition(|d| d.value.starts_with("${") && d.value.ends_with('}'));
    let (outs, typed) = read_outs(r);
    let env = r.str_list("env");
    let cmd = cmd?;
    let mut uses = stage_refs(&cmd, cx.stages);
    uses.extend(uses_in_deps.into_iter().map(|d| Spanned {
        value: d.value[2..d.value.len() - 1].to_owned(),
        span: d.span,
    }));
    uses.sort_by(|a, b| a.value.cmp(&b.value));
    uses.dedup_by(|a, b| a.value == b.value);
    let cmd = interpolate(cmd, cx.params).map_err(|e| r.error(e)).ok()?;
    let stage = Command {
        uses: uses.iter().map(|u| u.value.clone()).collect(),
        cmd,
        // The key sees `./a.txt` and `a.txt` as the same output; the planner
        // reports paths that do not normalize.
        outs: outs
            .iter()
            .map(|o| crate::paths::normalize_rel(&o.value).unwrap_or_else(|_| o.value.clone()))
            .collect(),
        env: env
            .into_iter()
            .map(|e| {
                let value = std::env::var(&e.value).ok();
                (e.value, value)
            })
            .collect(),
        typed,
    };
    Some(StageDecl {
        stage: Box::new(stage),
        refs: Vec::new(),
        deps,
        outs,
        outputs: Vec::new(),
        uses,
    })
}

/// The `${name}` and `${name.output}` in `cmd` whose `name` is a stage of
/// the pipeline (other `${...}` are the shell's), without `:raw`.
fn stage_refs(cmd: &Spanned<String>, stages: &[String]) -> Vec<Spanned<String>> {
    let mut out = Vec::new();
    let mut rest = cmd.value.as_str();
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let token = after[..end].strip_suffix(":raw").unwrap_or(&after[..end]);
        let stage = token.split('.').next().unwrap_or_default();
        if stage != "params" && stages.iter().any(|s| s == stage) {
            out.push(Spanned {
                value: token.to_owned(),
                span: cmd.span.clone(),
            });
        }
        rest = &after[end + 1..];
    }
    out
}

/// Replaces `${params.name}` by the param's value quoted for the shell
/// (a value made only of safe characters is left bare), and
/// `${params.name:raw}` by the value as it is. Other `${...}` forms are left
/// for the shell.
fn interpolate(cmd: Spanned<String>, params: &Table) -> Result<String, Diagnostic> {
    let text = &cmd.value;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${params.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "${params.".len()..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let (name, raw) = match after[..end].strip_suffix(":raw") {
            Some(n) => (n, true),
            None => (&after[..end], false),
        };
        let Some(value) = params.get(name) else {
            let known = params.entries.iter().map(|(k, _)| k.value.as_str());
            return Err(Diagnostic {
                message: format!("unknown param `{name}` in `cmd`"),
                span: cmd.span.clone(),
                label: format!("`${{params.{name}}}` is not in [params]"),
                help: crate::params::suggest(name, known).map(|s| format!("did you mean `{s}`?")),
            });
        };
        let text = value.interpolation_text();
        if raw {
            out.push_str(&text);
        } else {
            out.push_str(&shell_quote(&text));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `text` as one shell word: bare when it holds only characters no shell
/// treats specially, else in single quotes (a `'` inside becomes `'\''`).
pub fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.,/:=+@%".contains(&b));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

impl Kind for Command {
    const NAME: &'static str = "command";
    // 2: `${stage.output}` references (the command text may hold them).
    const VERSION: u32 = 2;
    // Only views need a scratch folder, and they make their own.
    const WANTS_SCRATCH: bool = false;

    fn aliases(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .typed
            .iter()
            .map(|(name, t)| (name.clone(), t.path.clone()))
            .collect();
        for ty in ArtifactType::NAMES {
            let mut of_type = self
                .typed
                .values()
                .filter(|t| t.kind.map(ArtifactType::name) == Some(ty));
            if let (Some(t), None) = (of_type.next(), of_type.next()) {
                if !self.typed.contains_key(ty) {
                    out.push((ty.to_owned(), t.path.clone()));
                }
            }
        }
        out
    }

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        // Stale outputs must not satisfy "the command created its outputs".
        // A link made since the pipeline was loaded must not lead the
        // removal out of the pipeline's folder.
        self.refuse_links(cx)?;
        for out in &self.outs {
            let path = cx.workdir.join(out);
            remove_path(&path)?;
            if let Some(parent) = path.parent() {
                fs_err::create_dir_all(parent).map_err(|e| StageError::io("create", parent, e))?;
            }
        }
        let log =
            fs_err::File::create(&cx.log).map_err(|e| StageError::io("create", &cx.log, e))?;
        let log = Arc::new(Mutex::new(log.into_parts().0));
        let (cmd, env) = self.resolve_inputs(cx, inputs)?;
        let mut spawned = self.spawn(cx, &cmd, &env)?;
        let child = &mut spawned.child;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let readers = [
            pipe_to_log(child.stdout.take(), &log, None),
            pipe_to_log(child.stderr.take(), &log, Some(tail.clone())),
        ];
        let status = wait_or_cancel(child, cx)?;
        // Whatever the command left running in its group ends with it: a
        // process writing an output after the commit would change bytes
        // the cache already named.
        let pgid = child.id();
        if crate::process::group_alive(pgid) {
            crate::process::kill_group(pgid, libc::SIGTERM);
            crate::process::wait_group_gone(pgid, Duration::from_millis(500));
            crate::process::kill_group(pgid, libc::SIGKILL);
            crate::process::wait_group_gone(pgid, Duration::from_secs(5));
        }
        // A background process the command left behind may hold the pipes
        // open; wait for the readers briefly, never forever.
        let deadline = Instant::now() + Duration::from_secs(1);
        for r in readers.into_iter().flatten() {
            while !r.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if !status.success() {
            let status = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "an unknown status".to_owned(),
            };
            let lines = tail.lock().expect("tail lock");
            let stderr_tail = lines.iter().map(|l| format!("  | {l}\n")).collect();
            return Err(StageError::CommandFailed {
                status,
                stderr_tail,
                log: cx.log.clone(),
            });
        }
        // Nor may the command's own links make outputs of outside files.
        self.refuse_links(cx)?;
        let mut paths = Vec::new();
        for out in &self.outs {
            let path = cx.workdir.join(out);
            if std::fs::symlink_metadata(&path).is_err() {
                return Err(StageError::MissingOutput {
                    path: out.clone(),
                    log: cx.log.clone(),
                });
            }
            paths.push((out.clone(), path));
        }
        let summary = self.check_typed(cx)?;
        Ok(StageOutputs {
            paths,
            summary,
            reexports: Vec::new(),
        })
    }
}

impl Command {
    /// Checks each typed output against its artifact type's format, and
    /// returns `{"metrics": {NAME: <the JSON>}}` for the typed `metrics`
    /// outputs, which `tuneflow metrics` shows (null if none; a file over
    /// 1 MiB is left out of the summary, and stays an output).
    fn check_typed(&self, cx: &StageContext) -> Result<serde_json::Value, StageError> {
        let mut metrics = serde_json::Map::new();
        for (name, t) in &self.typed {
            let Some(kind) = t.kind else { continue };
            let path = cx.workdir.join(&t.path);
            let invalid = |message| StageError::InvalidOutput {
                name: name.clone(),
                path: t.path.clone(),
                kind: kind.name(),
                message,
            };
            if kind == ArtifactType::Metrics {
                let value = crate::formats::artifact::read_metrics(&path).map_err(invalid)?;
                if std::fs::metadata(&path).is_ok_and(|m| m.len() <= 1 << 20) {
                    metrics.insert(name.clone(), value);
                }
            } else {
                kind.check(&path).map_err(invalid)?;
            }
        }
        if metrics.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        Ok(serde_json::json!({ "metrics": metrics }))
    }

    /// Fails when a folder on the way to an output is a symlink.
    fn refuse_links(&self, cx: &StageContext) -> Result<(), StageError> {
        for out in &self.outs {
            if let Some(link) = crate::paths::symlinked_component(&cx.workdir, out) {
                return Err(StageError::Other(format!(
                    "output `{out}` goes through the symlink `{link}`, which would lead it out of the pipeline's folder"
                )));
            }
        }
        Ok(())
    }

    /// The command with `${stage.output}` replaced by paths, and the
    /// `TUNEFLOW_INPUT_*` variables: every upstream output this stage reads
    /// gets a view (see [`crate::views`]) or its workspace path.
    fn resolve_inputs(
        &self,
        cx: &StageContext,
        inputs: &Inputs,
    ) -> Result<(String, Vec<(String, std::path::PathBuf)>), StageError> {
        let views = cx.scratch.join("inputs");
        let mut paths = BTreeMap::new();
        for name in inputs.upstream.iter().chain(&self.uses) {
            if !paths.contains_key(name) {
                paths.insert(
                    name.clone(),
                    crate::views::materialize(name, inputs, &views)?,
                );
            }
        }
        let mut cmd = self.cmd.clone();
        for name in &self.uses {
            let path = paths[name].to_string_lossy().into_owned();
            cmd = cmd
                .replace(&format!("${{{name}:raw}}"), &path)
                .replace(&format!("${{{name}}}"), &shell_quote(&path));
        }
        let env = paths
            .into_iter()
            .map(|(name, path)| (crate::views::env_name(&name), path))
            .collect();
        Ok((cmd, env))
    }

    fn spawn(
        &self,
        cx: &StageContext,
        cmd: &str,
        env: &[(String, std::path::PathBuf)],
    ) -> Result<Spawned, StageError> {
        let mut process = Process::new("sh");
        process
            .arg("-c")
            .arg(cmd)
            .current_dir(&cx.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("TUNEFLOW_STAGE", &cx.name)
            .envs(env.iter().map(|(k, v)| (k, v)));
        if !cx.gpus.is_empty() {
            let ids: Vec<_> = cx.gpus.iter().map(u32::to_string).collect();
            process.env("CUDA_VISIBLE_DEVICES", ids.join(","));
        }
        spawn_group(&mut process, cx.running.as_deref())
            .map_err(|e| StageError::io("start `sh -c` in", &cx.workdir, e))
    }
}

fn pipe_to_log<R: std::io::Read + Send + 'static>(
    pipe: Option<R>,
    log: &Arc<Mutex<std::fs::File>>,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) -> Option<std::thread::JoinHandle<()>> {
    let pipe = pipe?;
    let log = log.clone();
    Some(std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let _ = log.lock().expect("log lock").write_all(&line);
            if let Some(tail) = &tail {
                let mut t = tail.lock().expect("tail lock");
                if t.len() == STDERR_TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            line.clear();
        }
    }))
}

/// Waits for the child, polling the cancel flag; on cancel, stops the whole
/// process group (SIGTERM, then SIGKILL after half a second).
fn wait_or_cancel(
    child: &mut Child,
    cx: &StageContext,
) -> Result<std::process::ExitStatus, StageError> {
    let mut poll = Duration::from_millis(1);
    loop {
        if let Some(status) = crate::process::try_wait_measured(child, &cx.peak)
            .map_err(|e| StageError::io("wait for", &cx.log, e))?
        {
            return Ok(status);
        }
        if cx.cancel.is_cancelled() {
            crate::process::kill_group(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            crate::process::kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            crate::process::wait_group_gone(child.id(), Duration::from_secs(2));
            return Err(StageError::Cancelled);
        }
        std::thread::sleep(poll);
        poll = (poll * 2).min(Duration::from_millis(20));
    }
}

fn remove_path(path: &Path) -> Result<(), StageError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(path).map_err(|e| StageError::io("remove", path, e))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| StageError::io("remove", path, e)),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Value, ValueKind};

    fn cx(dir: &Path) -> StageContext {
        StageContext {
            name: "s".into(),
            log: dir.join("s.log"),
            ..StageContext::for_test(dir)
        }
    }

    fn command(cmd: &str, outs: &[&str]) -> Command {
        Command {
            cmd: cmd.into(),
            outs: outs.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            uses: vec![],
            typed: BTreeMap::new(),
        }
    }

    #[test]
    fn interpolates_params_and_leaves_shell_variables() {
        let mut params = Table::default();
        params.set(
            "n",
            Value {
                kind: ValueKind::Int(3),
                span: None,
            },
        );
        let cmd = Spanned {
            value: "echo ${params.n} ${HOME}".to_owned(),
            span: None,
        };
        assert_eq!(interpolate(cmd, &params).unwrap(), "echo 3 ${HOME}");
        params.set(
            "x",
            Value {
                kind: ValueKind::Str("a; rm -rf victim \"q\" it's".into()),
                span: None,
            },
        );
        let cmd = Spanned {
            value: "echo ${params.x} ${params.x:raw}".to_owned(),
            span: None,
        };
        assert_eq!(
            interpolate(cmd, &params).unwrap(),
            r#"echo 'a; rm -rf victim "q" it'\''s' a; rm -rf victim "q" it's"#
        );
        let bad = Spanned {
            value: "echo ${params.m}".to_owned(),
            span: Some(0..3),
        };
        let err = interpolate(bad, &params).unwrap_err();
        assert_eq!(err.message, "unknown param `m` in `cmd`");
    }

    #[test]
    fn quoted_values_reach_the_program_as_one_word() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("victim")).unwrap();
        for hostile in [
            "a; rm -rf victim",
            "$(touch INJECTED)",
            "`touch INJECTED`",
            "it's \"q\"",
            "",
            "*",
        ] {
            let c = command(
                &format!("printf %s {} > out.txt", shell_quote(hostile)),
                &["out.txt"],
            );
            c.run(&cx(dir.path()), &Inputs::default()).unwrap();
            assert_eq!(
                std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
                hostile
            );
        }
        assert!(dir.path().join("victim").is_dir());
        assert!(!dir.path().join("INJECTED").exists());
    }

    #[test]
    fn runs_and_returns_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let c = command("echo hi > out/a.txt", &["out/a.txt"]);
        let outputs = c.run(&cx(dir.path()), &Inputs::default()).unwrap();
        assert_eq!(outputs.paths[0].0, "out/a.txt");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/a.txt")).unwrap(),
            "hi\n"
        );
    }

    #[test]
    fn failure_reports_status_and_stderr_tail() {
        let dir = tempfile::tempdir().unwrap();
        let c = command("echo oops >&2; exit 3", &[]);
        let err = c
            .run(&cx(dir.path()), &Inputs::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("exit status 3"), "{err}");
        assert!(err.contains("| oops"), "{err}");
        assert!(err.contains("s.log"), "{err}");
    }

    #[test]
    fn missing_output_fails() {
        let dir = tempfile::tempdir().unwrap();
        let c = command("true", &["never.txt"]);
        let err = c.run(&cx(dir.path()), &Inputs::default()).unwrap_err();
        assert!(matches!(err, StageError::MissingOutput { .. }), "{err}");
    }

    #[test]
    fn background_process_holding_pipes_does_not_hang_the_stage() {
        let dir = tempfile::tempdir().unwrap();
        let c = command("(sleep 5 &) ; echo done", &[]);
        let started = Instant::now();
        c.run(&cx(dir.path()), &Inputs::default()).unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn cancel_stops_the_whole_process_group_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let c = command("sleep 30 & sleep 30; wait", &[]);
        let cx = cx(dir.path());
        let cancel = cx.cancel.clone();
        let started = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cancel.cancel();
        });
        let err = c.run(&cx, &Inputs::default()).unwrap_err();
        assert!(matches!(err, StageError::Cancelled));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
