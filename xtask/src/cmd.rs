//! Running external commands with errors that say which step failed, the
//! command line and what it printed.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// How many lines of a streamed command's output an error message repeats.
const TAIL_LINES: usize = 40;

/// A command to run: program, arguments, environment changes, directory.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
    timeout: Option<Duration>,
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            timeout: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Kill the command if it runs longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The command as one could type it in a shell:
    /// `(cd DIR && env -u VAR KEY=VALUE program args...)`.
    pub fn display(&self) -> String {
        let mut s = String::new();
        if let Some(dir) = &self.dir {
            let _ = write!(s, "(cd {} && ", quote(dir.as_os_str()));
        }
        if !self.env.is_empty() {
            s.push_str("env ");
        }
        // `env` wants its options before the assignments.
        for (k, _) in self.env.iter().filter(|(_, v)| v.is_none()) {
            let _ = write!(s, "-u {} ", k.to_string_lossy());
        }
        for (k, v) in &self.env {
            if let Some(v) = v {
                let _ = write!(s, "{}={} ", k.to_string_lossy(), quote(v));
            }
        }
        s.push_str(&quote(&self.program));
        for a in &self.args {
            s.push(' ');
            s.push_str(&quote(a));
        }
        if self.dir.is_some() {
            s.push(')');
        }
        s
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(dir) = &self.dir {
            c.current_dir(dir);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Run quietly and return its stdout. On failure the error names `step`,
    /// the command, its exit status and its stderr.
    pub fn output(&self, step: &str) -> Result<Output> {
        self.run(step, false)
    }

    /// Run quietly; `None` if it cannot be started or fails (for probes).
    pub fn probe(&self) -> Option<String> {
        self.output("probe").ok().map(|o| o.stdout.trim().to_owned())
    }

    /// Run, echoing its output live to stderr. On failure the error names
    /// `step`, the command, its exit status and the last lines it printed.
    pub fn stream(&self, step: &str) -> Result<()> {
        self.run(step, true).map(drop)
    }

    fn run(&self, step: &str, echo: bool) -> Result<Output> {
        let mut child =
            self.command().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| {
                anyhow!(
                    "step `{step}` failed: cannot start `{}`: {e}\n  command: {}",
                    self.program.to_string_lossy(),
                    self.display()
                )
            })?;

        // Both pipes are drained by threads so that neither can fill up and block the child.
        let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
        let stdout = child.stdout.take().context("stdout was piped")?;
        let stderr = child.stderr.take().context("stderr was piped")?;
        let out_thread = {
            let tail = Arc::clone(&tail);
            thread::spawn(move || drain(stdout, echo, &tail))
        };
        let err_thread = {
            let tail = Arc::clone(&tail);
            thread::spawn(move || drain(stderr, echo, &tail))
        };

        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if self.timeout.is_some_and(|t| started.elapsed() > t) {
                // Only the child we started, by its handle.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(50));
        };
        let stdout = out_thread.join().unwrap_or_default();
        let _ = err_thread.join();

        let what = match status {
            Some(status) if status.success() => return Ok(Output { stdout }),
            Some(status) => describe(status),
            None => format!("timed out after {} s and was killed", self.timeout.map_or(0, |t| t.as_secs())),
        };
        let tail = tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default();
        let printed = if tail.trim().is_empty() {
            "  (it printed nothing)".to_owned()
        } else if echo {
            format!("  last lines of its output:\n{}", indent(&tail))
        } else {
            format!("  its output:\n{}", indent(&tail))
        };
        Err(anyhow!("step `{step}` failed: the command {what}\n  command: {}\n{printed}", self.display()))
    }
}

/// Read a pipe to the end: echo lines to stderr if asked, keep the last
/// lines in `tail`, return everything read.
fn drain(pipe: impl Read, echo: bool, tail: &Mutex<VecDeque<String>>) -> String {
    let mut all = String::new();
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                if echo {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(text.as_bytes());
                }
                all.push_str(&text);
                if let Ok(mut tail) = tail.lock() {
                    tail.push_back(text.trim_end().to_owned());
                    if tail.len() > TAIL_LINES {
                        tail.pop_front();
                    }
                }
            }
        }
    }
    all
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("was killed ({status})"),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''").replace('\x1f', r"'$'\x1f''"))
    }
}
