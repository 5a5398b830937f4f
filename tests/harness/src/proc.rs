//! Child processes of the test control plane, each behind a tiny `sh`
//! watchdog: the harness holds the watchdog's stdin, and when that pipe
//! closes — the harness dropped the process, panicked, exited or was killed
//! with SIGKILL — the watchdog stops the real process (TERM, then KILL after
//! 5 s). No orphaned etcd or kube-apiserver survives the test binary.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

const WATCHDOG: &str = r#"
exec 3<&0
"$@" </dev/null &
pid=$!
echo "$pid" > "$KE_PIDFILE"
( cat <&3 >/dev/null; kill -TERM "$pid" 2>/dev/null; sleep 5; kill -KILL "$pid" 2>/dev/null ) &
watcher=$!
exec 3<&-
wait "$pid"
rc=$?
kill "$watcher" 2>/dev/null
if [ -n "${KE_CLEANUP_DIR:-}" ]; then rm -rf "$KE_CLEANUP_DIR"; fi
exit "$rc"
"#;

/// One supervised child process with its log file.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Proc {
    /// Starts `program args...` with stdout and stderr appended to
    /// `<log_dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log_dir: &Path,
    ) -> Result<Proc> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open {}", log.display()))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out);
        cmd.env("KE_PIDFILE", log.with_extension("pid"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {name} ({})", program.display()))?;
        let stdin = child.stdin.take();
        Ok(Proc {
            name: name.to_string(),
            child,
            stdin,
            log,
        })
    }

    /// Name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Process id of the real process (not its watchdog), once started.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.log.with_extension("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the process is still running (and its exit code if not).
    pub fn exited(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.code().unwrap_or(-1)),
            Ok(None) => None,
            Err(_) => Some(-1),
        }
    }

    /// The last `max` bytes of the log.
    pub fn log_tail(&self, max: u64) -> String {
        let mut out = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
            let _ = f.read_to_string(&mut out);
        }
        out
    }

    /// Asks the process to stop and waits up to 15 s for it.
    pub fn stop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. `KILL`, `TERM`) to the real process and waits
    /// up to 15 s for it to exit.
    pub fn signal(&mut self, signal: &str) -> Result<()> {
        let pid = std::fs::read_to_string(self.log.with_extension("pid"))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.trim())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", pid.trim());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!("{} did not exit after SIG{signal}", self.name)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}
