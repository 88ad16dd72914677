//! Helpers for end-to-end tests: run the real `agentwire` binary as a child process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `agentwire` binary: `AGENTWIRE_BIN`, or the one cargo built next to this test.
pub fn agentwire_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("AGENTWIRE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/agentwire
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary is not inside a cargo target directory")?;
    let bin = profile_dir.join(format!("agentwire{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        bail!(
            "{} is missing: build it with `cargo build -p agentwire` (or set AGENTWIRE_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `agentwire dev` on a free loopback port.
pub struct DevServer {
    pub child: Child,
    /// e.g. `http://127.0.0.1:40123`
    pub url: String,
    /// The admin token it printed (none with `--insecure`).
    pub admin_token: Option<String>,
}

impl DevServer {
    /// Starts `agentwire dev` on `data_dir` and waits until it listens.
    pub async fn start(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<DevServer> {
        let mut command = Command::new(agentwire_bin()?);
        command.arg("dev");
        if !extra_args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start agentwire dev")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("agentwire dev did not start within 30 s")??
            .context("agentwire dev exited before listening")?;
        let url = line
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .with_context(|| format!("unexpected first line from agentwire dev: {line:?}"))?
            .to_owned();
        let mut admin_token = None;
        if !extra_args.contains(&"--insecure") {
            let _banner = lines.next_line().await?.context("no token banner")?;
            admin_token = Some(lines.next_line().await?.context("no admin token")?);
        }
        // Keep reading, so the server never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(DevServer {
            child,
            url,
            admin_token,
        })
    }

    /// A client that sends the admin token on every request.
    pub fn admin_client(&self) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &self.admin_token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse()?,
            );
        }
        Ok(reqwest::Client::builder()
            .default_headers(headers)
            .build()?)
    }

    /// The URL of a stream.
    pub fn stream(&self, name: &str) -> String {
        format!("{}/v1/stream/{name}", self.url)
    }

    /// Mints a token with `agentwire token` from the server's data directory.
    pub fn token(data_dir: &Path, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new(agentwire_bin()?)
            .arg("token")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "agentwire token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Starts `agentwire demo-agent` on `session` of this server.
    pub fn demo_agent(
        &self,
        session: &str,
        token: Option<&str>,
        extra_args: &[&str],
    ) -> anyhow::Result<Child> {
        let mut command = Command::new(agentwire_bin()?);
        command
            .args(["demo-agent", "--session", session, "--url", &self.url])
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        Ok(command.spawn()?)
    }

    /// Kills the server with SIGKILL: no shutdown code runs.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
