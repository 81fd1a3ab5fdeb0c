//! `tracing` to the Workers console (`wrangler tail`, the dashboard's logs, workerd's
//! stderr locally), one line per event. No timestamps: the platform stamps each line, and
//! reading the clock through `SystemTime` panics on wasm32.

use std::io::Write;
use tracing_subscriber::filter::LevelFilter;

/// Collects one formatted event and prints it on drop.
pub struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let text = text.trim_end();
        if !text.is_empty() {
            worker::console_log!("{text}");
        }
    }
}

/// Installs the subscriber once per isolate at `WHARF_LOG` (`error`…`trace`, default
/// `info`). A level, not an `EnvFilter`: its regex engine would add to the wasm size.
pub fn init(level: Option<&str>) {
    let level = level
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .without_time()
        .with_writer(|| Line(Vec::new()))
        .try_init();
}
