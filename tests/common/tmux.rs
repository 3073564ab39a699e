//! The real binary in a real pseudo-terminal: a tmux server of its own,
//! driven by keystrokes and read back from the screen.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{BIN, Home};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(home: &Home) -> Self {
        Self::start_with(home, "", "", "main")
    }

    /// Start the app with extra environment and arguments, on its own tmux server.
    pub fn start_with(home: &Home, env: &str, args: &str, tag: &str) -> Self {
        Self::start_in(home.path(), env, args, tag)
    }

    /// As `start_with`, with the data directory given.
    pub fn start_in(dir: &Path, env: &str, args: &str, tag: &str) -> Self {
        let socket = format!("opsbot-test-{}-{tag}", std::process::id());
        let cmd = format!(
            "env OPSBOT_SANDBOX_LATENCY=0 NO_COLOR=1 {env} {BIN} --data-dir {} {args}",
            dir.display()
        );
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-s",
                "app",
                "-x",
                "120",
                "-y",
                "34",
                &cmd,
            ])
            .status()
            .expect("tmux must be installed (.ci/run installs it)")
            .success();
        assert!(ok, "tmux could not start the app");
        let t = Self { socket };
        t.tmux(&["set-option", "-t", "app", "remain-on-exit", "on"]);
        t
    }

    pub fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "app"])
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "app"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "app", "-l", text]);
    }

    /// Wait for `text` on screen, pressing `nudge` (if any) between looks.
    pub fn wait_for(&self, text: &str, nudge: Option<&str>) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "never saw {text:?}; screen:\n{screen}"
            );
            if let Some(k) = nudge {
                self.keys(&[k]);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn pane_dead(&self) -> bool {
        self.tmux(&["display-message", "-p", "-t", "app", "#{pane_dead}"])
            .trim()
            == "1"
    }

    /// Wait (at most 15 s) for the app to exit.
    pub fn wait_until_quit(&self) {
        let start = Instant::now();
        while !self.pane_dead() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the app did not quit:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}
