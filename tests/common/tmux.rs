//! A private tmux server for tests of what the binary draws on a terminal.

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of its own (`-L`), without the user's config, killed when dropped.
pub struct Tmux(String);

impl Tmux {
    /// A server named after `name` and this test process.
    pub fn new(name: &str) -> Tmux {
        Tmux(format!("{name}-{}", std::process::id()))
    }

    /// Whether tmux can be run at all.
    pub fn available() -> bool {
        Command::new("tmux").arg("-V").output().is_ok()
    }

    /// A `tmux` command talking to this server.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.0, "-f", "/dev/null"]);
        c
    }

    /// Starts window `run`, `width` x `height`, in the repository, running `shell` (a shell
    /// command line); panics if tmux cannot start it.
    pub fn start(&self, width: u16, height: u16, shell: &str) {
        let status = self
            .cmd()
            .args(["new-session", "-d", "-s", "run"])
            .args(["-x", &width.to_string(), "-y", &height.to_string(), "-c"])
            .arg(super::repo())
            .arg(shell)
            .status()
            .expect("run tmux new-session");
        assert!(status.success(), "tmux new-session: {status}");
    }

    /// The text of the window `run` (its scrollback too, wrapped lines joined).
    pub fn capture(&self) -> String {
        self.capture_of("run")
    }

    /// Captures window `run` until `done` holds for its text, which it returns; fails the
    /// test, saying `what` was never seen, after `limit`.
    pub fn wait_until(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.capture();
            if done(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "{what} never shown:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `q` in window `run` and waits for the `EXIT=0` line its shell command prints once
    /// the program ended (started as `PROGRAM; echo EXIT=$?; sleep ...`); returns the screen.
    pub fn quit(&self) -> String {
        let sent = self.cmd().args(["send-keys", "-t", "run", "q"]).status();
        assert!(
            sent.as_ref().is_ok_and(|s| s.success()),
            "tmux send-keys: {sent:?}"
        );
        self.wait_until("EXIT=0 after q", Duration::from_secs(10), |s| {
            s.lines().any(|l| l.trim() == "EXIT=0")
        })
    }

    /// The text of window `target`, scrollback and all, wrapped lines joined.
    pub fn capture_of(&self, target: &str) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-S", "-", "-t", target])
            .output()
            .expect("run tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}
