//! The real opsbot binary in a pseudo-terminal of our own (no relay in
//! between, so nothing adds to what is measured), driven by bytes as a
//! terminal would send them, its output read as the terminal would read it.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Every frame ratatui draws ends by hiding the cursor.
const FRAME_END: &[u8] = b"\x1b[?25l";

pub struct PtyApp {
    child: Child,
    master: std::fs::File,
    output: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl PtyApp {
    /// Start `opsbot ARGS` in a `cols`×`rows` pty with `data_dir`.
    pub fn start(exe: &Path, data_dir: &Path, args: &str, cols: u16, rows: u16) -> Self {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        rustix::termios::tcsetwinsize(
            &master,
            rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .expect("window size");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().expect("pty name"))
            .expect("open the pty");
        let mut cmd = Command::new(exe);
        cmd.arg("--data-dir").arg(data_dir);
        cmd.args(args.split_whitespace());
        let child = cmd
            .env("OPSBOT_SANDBOX_LATENCY", "0")
            .env("NO_COLOR", "1")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("start opsbot");
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().expect("dup");
        let output = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let (lock, cv) = &*sink;
                lock.lock().expect("output").extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        });
        Self {
            child,
            master,
            output,
        }
    }

    fn len(&self) -> usize {
        self.output.0.lock().expect("output").len()
    }

    /// Wait until the output from `from` on holds `needle`; false on timeout.
    fn wait_from(&self, from: usize, needle: &[u8], timeout: Duration) -> bool {
        let (lock, cv) = &*self.output;
        let deadline = Instant::now() + timeout;
        let mut out = lock.lock().expect("output");
        loop {
            if out.len() > from && out[from..].windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            out = cv.wait_timeout(out, deadline - now).expect("wait").0;
        }
    }

    /// Everything read so far, for a failure message.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.0.lock().expect("output")).into_owned()
    }

    /// How much output has been read so far: a mark to wait from.
    pub fn mark(&self) -> usize {
        self.len()
    }

    /// Wait for text in the output after `mark`; false on timeout.
    pub fn wait_text_after(&self, mark: usize, text: &str, timeout: Duration) -> bool {
        self.wait_from(mark, text.as_bytes(), timeout)
    }

    /// Wait for text anywhere in the output so far (or to come).
    pub fn wait_text(&self, text: &str, timeout: Duration) -> bool {
        self.wait_from(0, text.as_bytes(), timeout)
    }

    /// Send bytes, without waiting.
    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to the pty");
        self.master.flush().expect("flush");
    }

    /// Send a key and time until the frame it caused has been read in
    /// full: from the write to the end of the next frame.
    pub fn key_to_frame(&mut self, key: &[u8]) -> Duration {
        let from = self.len();
        let t = Instant::now();
        self.send(key);
        assert!(
            self.wait_from(from, FRAME_END, Duration::from_secs(30)),
            "no frame after a key"
        );
        t.elapsed()
    }

    /// Let output settle: no new bytes for `quiet`.
    pub fn settle(&self, quiet: Duration) {
        let mut last = self.len();
        loop {
            std::thread::sleep(quiet);
            let now = self.len();
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Resident memory of the opsbot process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for PtyApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
